#!/usr/bin/env python3
"""Courier from Python: a producer with a Checker, and an idempotent consumer.

    pip install -r examples/python/requirements.txt
    python3 examples/python/demo.py --addr 127.0.0.1:50051
    COURIER_TOKEN=... python3 examples/python/demo.py --addr courier:50051 --ca-file ca.pem

The client code is generated from ../../proto with grpcio-tools on every run (into
examples/python/generated/), so it always matches the contract. The demo runs two flows against
a live Courier and exits 0 only if every step succeeded:

1. Prepare -> local SQLite transaction -> Confirm; a consumer Receives, records the message in
   processed_messages in the same SQLite transaction as its business write, Acks; CheckStatus
   says DELIVERED. A repeated delivery is skipped by the processed_messages row.
2. Check-back: Prepare, the local transaction commits, and the producer "crashes" before
   Confirm. Courier's scheduler calls the Checker served by this script, which finds the order
   in its own SQLite database and answers COMMIT; the message is confirmed and delivered. The
   Checker first verifies the JWT Courier signs every call with, against Courier's JWKS
   (--jwks-url), and refuses calls that are not Courier's with UNAUTHENTICATED.

Every name (producer, topic, subscription, keys) is unique per run, so the demo can run again
against the same server.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
GENERATED = HERE / "generated"

RPC_TIMEOUT = 10  # seconds, for every unary call except the long poll
DEFAULT_JWKS_URL = "http://127.0.0.1:9464/.well-known/jwks.json"  # Courier's metrics_listen
CHECK_BACK_WAIT = 15  # seconds the check-back may take before the demo gives up


class DemoFailure(Exception):
    """A step did not give the expected answer."""


def generate_client() -> None:
    """Runs grpcio-tools' protoc over proto/courier/v1 into GENERATED and makes it importable."""
    protos = sorted(
        str(path.relative_to(PROTO_ROOT)) for path in (PROTO_ROOT / "courier" / "v1").glob("*.proto")
    )
    if not protos:
        raise DemoFailure(f"no .proto files under {PROTO_ROOT}")
    GENERATED.mkdir(exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={GENERATED}",
            f"--grpc_python_out={GENERATED}",
            *protos,
        ],
        check=True,
    )
    sys.path.insert(0, str(GENERATED))


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def ok(text: str) -> None:
    print(f"    ok: {text}", flush=True)


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise DemoFailure(problem)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:50051", help="Courier's gRPC address, HOST:PORT")
    parser.add_argument(
        "--checker-host",
        default="127.0.0.1",
        help="address the demo's Checker listens on and Courier calls back (default 127.0.0.1; "
        "use an address Courier can reach when it runs elsewhere)",
    )
    parser.add_argument(
        "--ca-file",
        help="connect over TLS, trusting this CA certificate (PEM); without it, plaintext",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("COURIER_TOKEN"),
        help="bearer token sent with every call (default: $COURIER_TOKEN); needs --ca-file, "
        "since a token must not travel in plaintext",
    )
    parser.add_argument(
        "--jwks-url",
        default=DEFAULT_JWKS_URL,
        help="Courier's public keys, to verify the JWT on each call to the Checker "
        f"(default {DEFAULT_JWKS_URL}, on Courier's metrics_listen)",
    )
    args = parser.parse_args()
    if args.token and not args.ca_file:
        parser.error("--token needs --ca-file: a token must not travel in plaintext")

    step(f"generate the Python client from {PROTO_ROOT}")
    generate_client()
    ok(f"generated into {GENERATED}")

    try:
        with tempfile.TemporaryDirectory(prefix="courier-demo-") as workdir:
            Demo(
                args.addr, args.checker_host, args.jwks_url, Path(workdir), args.ca_file, args.token
            ).run()
    except DemoFailure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    except Exception as error:  # grpc.RpcError and friends: report, never pass
        print(f"FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print("demo passed: every step succeeded")
    return 0


def open_channel(grpc, addr: str, ca_file: str | None, token: str | None):
    """Plaintext, or TLS trusting `ca_file` with `authorization: Bearer <token>` on every call."""
    if not ca_file:
        return grpc.insecure_channel(addr)
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.secure_channel(addr, credentials)


class Demo:
    def __init__(
        self,
        addr: str,
        checker_host: str,
        jwks_url: str,
        workdir: Path,
        ca_file: str | None,
        token: str | None,
    ) -> None:
        # Imported here: the modules exist only after generate_client().
        import grpc
        import jwt
        from google.protobuf.duration_pb2 import Duration

        from courier.v1 import (
            admin_pb2_grpc,
            checker_pb2,
            checker_pb2_grpc,
            common_pb2,
            consumer_pb2,
            consumer_pb2_grpc,
            producer_pb2,
            producer_pb2_grpc,
        )

        self.grpc = grpc
        self.Duration = Duration
        self.pb_common = common_pb2
        self.pb_producer = producer_pb2
        self.pb_consumer = consumer_pb2
        self.pb_checker = checker_pb2
        self.checker_grpc = checker_pb2_grpc

        self.addr = addr
        self.checker_host = checker_host
        self.checker_endpoint = ""  # set once the Checker listens; the `aud` of Courier's calls
        # Fetches Courier's JWKS, caches it, and fetches again for a kid it does not know.
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True)
        run = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.producer_name = f"py-shop-{run}"
        self.topic = f"py-orders-{run}"
        self.subscription = f"py-billing-{run}"
        self.run_id = run

        self.channel = open_channel(grpc, addr, ca_file, token)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.producer = producer_pb2_grpc.ProducerStub(self.channel)
        self.consumer = consumer_pb2_grpc.ConsumerStub(self.channel)

        # The producer's and the consumer's own databases (two services, two databases).
        self.shop_db_path = workdir / "shop.db"
        self.billing_db_path = workdir / "billing.db"
        with contextlib.closing(sqlite3.connect(self.shop_db_path)) as db, db:
            db.execute("CREATE TABLE orders (order_no TEXT PRIMARY KEY, total INTEGER NOT NULL)")
        with contextlib.closing(sqlite3.connect(self.billing_db_path)) as db, db:
            db.execute("CREATE TABLE processed_messages (message_id TEXT PRIMARY KEY, processed_at TEXT NOT NULL)")
            db.execute("CREATE TABLE invoices (order_no TEXT PRIMARY KEY, amount INTEGER NOT NULL)")

    # ---- the flows -------------------------------------------------------------------------

    def run(self) -> None:
        step(f"connect to Courier at {self.addr}")
        try:
            self.grpc.channel_ready_future(self.channel).result(timeout=RPC_TIMEOUT)
        except self.grpc.FutureTimeoutError:
            raise DemoFailure(f"Courier at {self.addr} did not answer within {RPC_TIMEOUT}s") from None
        ok("channel ready")

        checker = ShopChecker(self)
        server = self.grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.checker_grpc.add_CheckerServicer_to_server(checker, server)
        port = server.add_insecure_port(f"{self.checker_host}:0")
        expect(port != 0, f"cannot listen on {self.checker_host}:0 for the Checker")
        server.start()
        self.checker_endpoint = f"http://{self.checker_host}:{port}"
        try:
            self.setup(self.checker_endpoint)
            self.two_phase_flow()
            self.check_back_flow(checker)
        finally:
            server.stop(grace=None)
            self.channel.close()

    def setup(self, checker_endpoint: str) -> None:
        from courier.v1 import admin_pb2

        step(f"create subscription {self.subscription} on topic {self.topic}")
        sub = self.admin.CreateSubscription(
            admin_pb2.CreateSubscriptionRequest(
                subscription=self.pb_common.Subscription(name=self.subscription, topic=self.topic)
            ),
            timeout=RPC_TIMEOUT,
        )
        expect(sub.name == self.subscription and sub.topic == self.topic, f"unexpected subscription {sub}")
        ok(f"created (ack deadline {sub.ack_deadline.seconds}s)")

        step(f"register the Checker of producer {self.producer_name} at {checker_endpoint}")
        self.producer.RegisterChecker(
            self.pb_producer.RegisterCheckerRequest(
                producer=self.producer_name, endpoint=checker_endpoint, timeout=self.Duration(seconds=2)
            ),
            timeout=RPC_TIMEOUT,
        )
        ok("registered")

    def two_phase_flow(self) -> None:
        order_no = f"order-{self.run_id}-1"
        message_id = self.prepare(order_no, total=42)

        step(f"local transaction: INSERT order {order_no} into the shop's SQLite database")
        self.commit_order(order_no, total=42)
        ok("committed")

        step(f"Confirm {message_id}")
        confirmed = self.producer.Confirm(
            self.pb_producer.ConfirmRequest(message=self.pb_common.MessageRef(message_id=message_id)),
            timeout=RPC_TIMEOUT,
        )
        expect(
            confirmed.state == self.pb_common.MESSAGE_STATE_CONFIRMED,
            f"Confirm answered {self.state_name(confirmed.state)}",
        )
        ok("MESSAGE_STATE_CONFIRMED")

        delivery = self.consume(message_id)

        step("the same delivery again (as after a crash before the Ack): processed_messages skips it")
        applied = self.process(delivery)
        expect(not applied, "the repeated delivery was applied twice")
        expect(self.invoice_count(order_no) == 1, "the invoice was written twice")
        self.ack(delivery)
        ok("skipped, one invoice; the repeated Ack is ACK_STATUS_OK")

        self.expect_delivered(message_id)

    def check_back_flow(self, checker: ShopChecker) -> None:
        order_no = f"order-{self.run_id}-2"
        message_id = self.prepare(order_no, total=7, check_after=1)

        step(f"local transaction: INSERT order {order_no}; then the producer 'crashes' before Confirm")
        self.commit_order(order_no, total=7)
        ok("committed, never confirmed")

        step(f"wait (up to {CHECK_BACK_WAIT}s) for Courier's scheduler to ask the Checker")
        deadline = time.monotonic() + CHECK_BACK_WAIT
        while True:
            message = self.status(message_id)
            if message.state != self.pb_common.MESSAGE_STATE_PREPARED:
                break
            expect(
                time.monotonic() < deadline,
                f"still PREPARED after {CHECK_BACK_WAIT}s (check attempts {message.check_attempts}, "
                f"last check error {message.last_check_error!r}); is Courier's scheduler running?",
            )
            time.sleep(0.25)
        expect(
            message.state == self.pb_common.MESSAGE_STATE_CONFIRMED,
            f"the check-back made it {self.state_name(message.state)}",
        )
        answers = checker.answers_for(order_no)
        expect(
            "DECISION_COMMIT" in answers,
            f"confirmed, but the Checker never answered COMMIT for it (answers: {answers})",
        )
        ok(f"the Checker answered {', '.join(answers)}; Courier made the message MESSAGE_STATE_CONFIRMED")
        expect(not checker.refused, f"the Checker refused calls: {checker.refused}")
        ok("every call to the Checker carried a JWT that verifies against Courier's JWKS")

        self.consume(message_id)
        self.expect_delivered(message_id)

    # ---- producer side ---------------------------------------------------------------------

    def prepare(self, order_no: str, total: int, check_after: int | None = None) -> str:
        payload = json.dumps({"order_no": order_no, "total": total}).encode()
        request = self.pb_producer.PrepareRequest(
            producer=self.producer_name,
            topic=self.topic,
            key=order_no,
            payload=payload,
            headers={"content-type": "application/json"},
        )
        if check_after is not None:
            request.check_after.CopyFrom(self.Duration(seconds=check_after))
        what = f" (check_after {check_after}s)" if check_after is not None else ""
        step(f"Prepare {order_no}{what}")
        prepared = self.producer.Prepare(request, timeout=RPC_TIMEOUT)
        expect(prepared.created, "Prepare found an existing message for a fresh key")
        expect(
            prepared.state == self.pb_common.MESSAGE_STATE_PREPARED,
            f"Prepare answered {self.state_name(prepared.state)}",
        )
        ok(f"message {prepared.message_id} MESSAGE_STATE_PREPARED")
        return prepared.message_id

    def commit_order(self, order_no: str, total: int) -> None:
        with contextlib.closing(sqlite3.connect(self.shop_db_path)) as db, db:
            db.execute("INSERT INTO orders (order_no, total) VALUES (?, ?)", (order_no, total))

    def status(self, message_id: str):
        return self.producer.CheckStatus(
            self.pb_producer.CheckStatusRequest(message=self.pb_common.MessageRef(message_id=message_id)),
            timeout=RPC_TIMEOUT,
        ).message

    def expect_delivered(self, message_id: str) -> None:
        step(f"CheckStatus {message_id}")
        message = self.status(message_id)
        outcome = self.pb_common.MessageOutcome.Name(message.outcome)
        expect(outcome == "MESSAGE_OUTCOME_DELIVERED", f"outcome is {outcome}")
        states = [self.pb_common.DeliveryState.Name(d.state) for d in message.deliveries]
        expect(states == ["DELIVERY_STATE_ACKED"], f"deliveries are {states}")
        ok(f"{outcome}, delivery to {self.subscription} {states[0]}")

    # ---- consumer side ---------------------------------------------------------------------

    def consume(self, message_id: str):
        """Receives until the delivery of message_id arrives; processes and acks it."""
        step(f"Receive on {self.subscription} (long poll)")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            received = self.consumer.Receive(
                self.pb_consumer.ReceiveRequest(
                    subscription=self.subscription, max_messages=10, wait=self.Duration(seconds=5)
                ),
                timeout=RPC_TIMEOUT,
            )
            for delivery in received.deliveries:
                ok(f"delivery of {delivery.key} (message {delivery.message_id}, attempt {delivery.attempt})")
                expect(delivery.message_id == message_id, f"unexpected delivery {delivery.message_id}")
                step("process: processed_messages row and invoice in one SQLite transaction, then Ack")
                expect(self.process(delivery), "a first delivery was skipped as already processed")
                self.ack(delivery)
                ok("invoice written; ACK_STATUS_OK")
                return delivery
        raise DemoFailure(f"no delivery of {message_id} within 20s")

    def process(self, delivery) -> bool:
        """The idempotent consumer: returns whether the business write was applied."""
        order = json.loads(delivery.payload)
        with contextlib.closing(sqlite3.connect(self.billing_db_path)) as db, db:  # one transaction
            inserted = db.execute(
                "INSERT INTO processed_messages (message_id, processed_at) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                (delivery.message_id, datetime.datetime.now(datetime.timezone.utc).isoformat()),
            ).rowcount
            if inserted == 1:
                db.execute(
                    "INSERT INTO invoices (order_no, amount) VALUES (?, ?)", (order["order_no"], order["total"])
                )
            return inserted == 1

    def ack(self, delivery) -> None:
        acked = self.consumer.Ack(
            self.pb_consumer.AckRequest(subscription=self.subscription, receipts=[delivery.receipt]),
            timeout=RPC_TIMEOUT,
        )
        statuses = [self.pb_consumer.AckStatus.Name(result.status) for result in acked.results]
        expect(statuses == ["ACK_STATUS_OK"], f"Ack answered {statuses}")

    def invoice_count(self, order_no: str) -> int:
        with contextlib.closing(sqlite3.connect(self.billing_db_path)) as db:
            return db.execute("SELECT count(*) FROM invoices WHERE order_no = ?", (order_no,)).fetchone()[0]

    def state_name(self, state: int) -> str:
        return self.pb_common.MessageState.Name(state)


class ShopChecker:
    """courier.v1.Checker: answers from the shop's own database whether an order committed."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.lock = threading.Lock()
        self.answers: list[tuple[str, str]] = []
        self.refused: list[str] = []

    def caller_is_courier(self, request, context) -> bool:
        """Verifies the `authorization: Bearer <JWT>` Courier signs every call with."""
        import jwt

        metadata = dict(context.invocation_metadata())
        token = metadata.get("authorization", "").removeprefix("Bearer ")
        try:
            key = self.demo.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["EdDSA"],
                issuer="courier",
                audience=self.demo.checker_endpoint,  # this Checker's URL, as registered
                options={"require": ["exp", "iat", "sub", "message_id"]},
                leeway=5,
            )
        except jwt.PyJWTError as error:
            problem = f"{type(error).__name__}: {error}"
        else:
            if claims["sub"] == request.producer and claims["message_id"] == request.message_id:
                return True
            problem = f"token for {claims['sub']}/{claims['message_id']}, call for {request.message_id}"
        with self.lock:
            self.refused.append(problem)
        context.abort(self.demo.grpc.StatusCode.UNAUTHENTICATED, "not a call from Courier")
        return False

    def Check(self, request, context):  # noqa: N802 (the gRPC method name)
        if not self.caller_is_courier(request, context):
            return None
        pb = self.demo.pb_common
        with contextlib.closing(sqlite3.connect(self.demo.shop_db_path)) as db:
            committed = db.execute("SELECT 1 FROM orders WHERE order_no = ?", (request.key,)).fetchone()
        age = time.time() - request.prepared_at.ToSeconds()
        if committed:
            decision = pb.DECISION_COMMIT
        elif age > 60:
            decision = pb.DECISION_ROLLBACK  # older than any transaction of ours: it never committed
        else:
            decision = pb.DECISION_UNKNOWN  # may still be running: ask again later
        name = pb.Decision.Name(decision)
        with self.lock:
            self.answers.append((request.key, name))
        print(f"    checker: Check({request.key}, attempt {request.check_attempt}) -> {name}", flush=True)
        return self.demo.pb_checker.CheckResponse(decision=decision)

    def answers_for(self, key: str) -> list[str]:
        with self.lock:
            return [decision for answered_key, decision in self.answers if answered_key == key]


if __name__ == "__main__":
    sys.exit(main())
