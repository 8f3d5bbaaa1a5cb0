#!/usr/bin/env python3
"""Push delivery on courier-client: Courier calls this script's Receiver with each delivery.

    pip install -e "clients/python[jwt]"
    python3 clients/python/examples/push.py --addr 127.0.0.1:50051

The Receiver verifies the JWT Courier signs each call with (against --jwks-url) and runs the
handler through an Inbox in a SQLite database, so a repeated push is acknowledged without
sending a second e-mail. The first push of each message fails on purpose: Courier retries it.
Exits 0 once both messages are DELIVERED with one e-mail each.
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("--ca-file", help="TLS, trusting this CA (PEM); plaintext without it")
    parser.add_argument("--token", default=os.environ.get("COURIER_TOKEN"))
    parser.add_argument("--jwks-url", default=DEFAULT_JWKS_URL)
    parser.add_argument("--receiver-host", default="127.0.0.1", help="where Courier reaches us")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="    log: %(name)s: %(message)s")

    run_id = f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    topic, subscription = f"py-lib-signups-{run_id}", f"py-lib-mailer-{run_id}"
    channel = courier.connect(args.addr, ca_file=args.ca_file, token=args.token)
    with tempfile.TemporaryDirectory(prefix="courier-push-") as workdir:
        mailer_db = courier.Database.sqlite(str(Path(workdir) / "mailer.db"))
        mailer_db.run_ddl(["CREATE TABLE emails (address TEXT NOT NULL)"])
        inbox = courier.Inbox(mailer_db)
        inbox.install()

        def send_welcome(delivery, connection):
            mailer_db.execute(
                connection, "INSERT INTO emails (address) VALUES (?)", (delivery.payload.decode(),)
            )

        welcome_once = inbox.handler(send_welcome)

        def handle(delivery):
            welcome_once(delivery)
            if delivery.attempt == 1:
                raise ConnectionError("the answer got lost")  # Courier pushes it again

        verifier = courier.CallbackVerifier(args.jwks_url)
        with courier.serve_receiver(handle, host=args.receiver_host, verifier=verifier) as receiver:
            print(f"==> Receiver at {receiver.endpoint}; push subscription {subscription}")
            admin_pb2_grpc.AdminStub(channel).CreateSubscription(
                admin_pb2.CreateSubscriptionRequest(
                    subscription=common_pb2.Subscription(
                        name=subscription,
                        topic=topic,
                        push_endpoint=receiver.endpoint,
                        retry_policy=common_pb2.RetryPolicy(
                            initial_backoff=duration(0.2), max_backoff=duration(0.2)
                        ),
                    )
                ),
                timeout=10,
            )
            producer = courier.Producer(channel, f"py-lib-accounts-{run_id}")
            ids = [
                producer.publish(topic, f"signup-{run_id}-{n}", f"user{n}@example.com").message_id
                for n in (1, 2)
            ]
            print(f"==> published {len(ids)} signups; waiting until both are DELIVERED")
            deadline = time.monotonic() + 20
            while not all(
                producer.status(i).outcome == common_pb2.MESSAGE_OUTCOME_DELIVERED for i in ids
            ):
                if time.monotonic() > deadline:
                    print("FAILED: not delivered within 20s", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        with sqlite3.connect(Path(workdir) / "mailer.db") as db:
            emails = sorted(row[0] for row in db.execute("SELECT address FROM emails"))
    channel.close()
    if emails != ["user1@example.com", "user2@example.com"]:
        print(f"FAILED: e-mails sent: {emails}", file=sys.stderr)
        return 1
    print("push example passed: each signup pushed twice, one e-mail each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
