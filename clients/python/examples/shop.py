#!/usr/bin/env python3
"""A shop and its billing service on courier-client: the library's version of examples/python.

    pip install -e "clients/python[jwt]"
    python3 clients/python/examples/shop.py --addr 127.0.0.1:50051
    COURIER_TOKEN=... python3 clients/python/examples/shop.py --addr HOST:PORT --ca-file ca.pem

The shop (producer) writes each order and its outbox row in one SQLite transaction between
Prepare and Confirm; its Checker answers Courier's check-backs from that outbox, verifying the
JWT Courier signs each call with. Billing (consumer) writes each invoice and its inbox row in one
SQLite transaction, so a redelivered order is billed once. Three orders:

1. placed normally: confirmed, delivered, billed once (a redelivery after a lost Ack is skipped);
2. the shop "crashes" after its local COMMIT, before Confirm: the check-back answers COMMIT;
3. the shop's transaction fails: the message is cancelled and never delivered.

Exits 0 only if every step gave the expected answer. Names are new on every run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import courier_client as courier
from courier_client._values import duration
from courier_client.v1 import admin_pb2, admin_pb2_grpc, common_pb2

DEFAULT_JWKS_URL = "http://127.0.0.1:9464/.well-known/jwks.json"  # Courier's metrics_listen


class Failed(Exception):
    pass


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise Failed(problem)


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def wait_until(what: str, predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        expect(time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s")
        time.sleep(0.1)
    return value


class OutOfStock(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--ca-file", help="TLS, trusting this CA (PEM); plaintext without it")
    parser.add_argument(
        "--token", default=os.environ.get("COURIER_TOKEN"), help="default $COURIER_TOKEN"
    )
    parser.add_argument(
        "--jwks-url", default=DEFAULT_JWKS_URL, help="Courier's JWKS, to verify its calls"
    )
    parser.add_argument(
        "--checker-host", default="127.0.0.1", help="where Courier reaches this Checker"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="    log: %(name)s: %(message)s")
    try:
        with tempfile.TemporaryDirectory(prefix="courier-shop-") as workdir:
            run(args, Path(workdir))
    except Failed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print("shop example passed: every step succeeded")
    return 0


def run(args, workdir: Path) -> None:
    run_id = f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    topic, subscription = f"py-lib-orders-{run_id}", f"py-lib-billing-{run_id}"
    channel = courier.connect(args.addr, ca_file=args.ca_file, token=args.token)
    verifier = courier.CallbackVerifier(args.jwks_url)

    step(f"subscription {subscription} on {topic} (retry after 200 ms)")
    admin_pb2_grpc.AdminStub(channel).CreateSubscription(
        admin_pb2.CreateSubscriptionRequest(
            subscription=common_pb2.Subscription(
                name=subscription,
                topic=topic,
                retry_policy=common_pb2.RetryPolicy(
                    initial_backoff=duration(0.2), max_backoff=duration(0.2)
                ),
            )
        ),
        timeout=10,
    )

    # ---- the shop: orders and the outbox in one database, a Checker answering from it -------
    shop_db = courier.Database.sqlite(str(workdir / "shop.db"))
    shop_db.run_ddl(["CREATE TABLE orders (order_no TEXT PRIMARY KEY, total INTEGER NOT NULL)"])
    producer = courier.Producer(channel, f"py-lib-shop-{run_id}")
    outbox = courier.Outbox(shop_db, producer)
    outbox.install()
    checker = courier.serve_checker(outbox, host=args.checker_host, verifier=verifier, timeout=2)
    step(f"the shop's Checker serves {checker.endpoint}, registered for {producer.name}")

    # ---- billing: invoices and the inbox in one database -----------------------------------
    billing_db = courier.Database.sqlite(str(workdir / "billing.db"))
    billing_db.run_ddl(
        ["CREATE TABLE invoices (order_no TEXT PRIMARY KEY, total INTEGER NOT NULL)"]
    )
    inbox = courier.Inbox(billing_db)
    inbox.install()
    handled = []

    def bill(delivery, connection):
        order = json.loads(delivery.payload)
        billing_db.execute(
            connection,
            "INSERT INTO invoices (order_no, total) VALUES (?, ?)",
            (order["order_no"], order["total"]),
        )

    bill_once = inbox.handler(bill)

    def handle(delivery):
        handled.append((delivery.key, delivery.attempt))
        bill_once(delivery)
        if delivery.key.endswith("-1") and delivery.attempt == 1:
            raise ConnectionError("the Ack got lost")  # as if billing died before acking

    consumer = courier.Consumer(channel, subscription, handle, concurrency=4, wait=1).start()

    def outcome(message_id):
        return common_pb2.MessageOutcome.Name(producer.status(message_id).outcome)

    def invoices(order_no):
        with sqlite3.connect(workdir / "billing.db") as db:
            return db.execute(
                "SELECT count(*) FROM invoices WHERE order_no = ?", (order_no,)
            ).fetchone()[0]

    try:
        order_no = f"order-{run_id}-1"
        step(f"order {order_no}: Prepare, INSERT order + outbox row, COMMIT, Confirm")
        with outbox.send(topic, order_no, json.dumps({"order_no": order_no, "total": 42})) as tx:
            tx.connection.execute(
                "INSERT INTO orders (order_no, total) VALUES (?, 42)", (order_no,)
            )
        wait_until("delivered", lambda: outcome(tx.message_id) == "MESSAGE_OUTCOME_DELIVERED")
        attempts = [attempt for key, attempt in handled if key == order_no]
        expect(attempts == [1, 2], f"billing saw attempts {attempts}, expected [1, 2]")
        expect(invoices(order_no) == 1, "the order was billed twice")
        print("    ok: delivered twice (the first Ack lost), billed once thanks to the inbox")

        order_no = f"order-{run_id}-2"
        step(f"order {order_no}: Prepare, local COMMIT, then the shop 'crashes' before Confirm")
        message = producer.prepare(
            topic, order_no, json.dumps({"order_no": order_no, "total": 7}), check_after=1
        )
        with shop_db.transaction() as connection:
            connection.execute("INSERT INTO orders (order_no, total) VALUES (?, 7)", (order_no,))
            outbox.record(connection, message)
        wait_until(
            "decided by check-back",
            lambda: outcome(message.message_id) == "MESSAGE_OUTCOME_DELIVERED",
        )
        expect(invoices(order_no) == 1, "the checked-back order was not billed")
        print("    ok: the Checker answered COMMIT from the outbox; delivered and billed")

        order_no = f"order-{run_id}-3"
        step(f"order {order_no}: the local transaction fails")
        try:
            with outbox.send(topic, order_no, json.dumps({"order_no": order_no, "total": 1})) as tx:
                raise OutOfStock(order_no)
        except OutOfStock:
            pass
        expect(
            outcome(tx.message_id) == "MESSAGE_OUTCOME_CANCELLED",
            "the failed order was not cancelled",
        )
        print("    ok: cancelled, never delivered")
    finally:
        step("graceful shutdown: consumer, Checker")
        consumer.stop()
        checker.stop()
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
