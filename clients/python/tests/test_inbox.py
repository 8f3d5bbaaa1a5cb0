"""The Inbox against a live Courier, on sqlite3 and PostgreSQL: a redelivered message is acked
without running the handler's work again; work that fails leaves no inbox row."""

from __future__ import annotations

import pytest
from conftest import outcome_name, wait_for

from courier_client import BY_MESSAGE_ID, BY_PRODUCER_KEY, Consumer, Inbox, Producer


class LostAck(Exception):
    """Raised after the inbox transaction committed: as if the process died before its Ack."""


@pytest.fixture
def billing(app_db):
    invoices = app_db.table("invoices")
    app_db.execute(f"CREATE TABLE {invoices} (message_id TEXT NOT NULL, amount INTEGER NOT NULL)")
    return invoices


def run_until_delivered(channel, names, handler, message_id):
    consumer = Consumer(channel, names.subscription, handler, wait=1).start()
    producer = Producer(channel, names.producer)
    try:
        wait_for(
            lambda: outcome_name(producer.status(message_id).outcome) == "MESSAGE_OUTCOME_DELIVERED"
        )
    finally:
        consumer.stop()


@pytest.mark.parametrize("dedup", [BY_MESSAGE_ID, BY_PRODUCER_KEY])
def test_a_redelivery_after_a_lost_ack_is_acked_without_running_the_work(
    channel, admin, names, app_db, billing, dedup
):
    admin.subscribe(names.subscription, names.topic, backoff=0.2)
    inbox = Inbox(app_db.database, table=app_db.table("courier_inbox"), dedup=dedup)
    inbox.install()
    work_runs, attempts = [], []

    def write_invoice(delivery, connection):
        work_runs.append(delivery.attempt)
        app_db.database.execute(
            connection,
            f"INSERT INTO {billing} (message_id, amount) VALUES (?, ?)",
            (delivery.message_id, 42),
        )

    handle = inbox.handler(write_invoice)

    def handler(delivery):
        attempts.append(delivery.attempt)
        handle(delivery)
        if delivery.attempt == 1:
            raise LostAck()

    message_id = (
        Producer(channel, names.producer).publish(names.topic, names.key(), b"{}").message_id
    )
    run_until_delivered(channel, names, handler, message_id)

    assert attempts == [1, 2]
    assert work_runs == [1]
    assert app_db.query(f"SELECT message_id, amount FROM {billing}") == [(message_id, 42)]
    expected_key = message_id if dedup == BY_MESSAGE_ID else f"{names.producer}/{names.key()}"
    assert app_db.query(f"SELECT dedup_key FROM {inbox.table}") == [(expected_key,)]


def test_work_that_fails_leaves_no_inbox_row_and_runs_again(channel, admin, names, app_db, billing):
    admin.subscribe(names.subscription, names.topic, backoff=0.2)
    inbox = Inbox(app_db.database, table=app_db.table("courier_inbox"))
    inbox.install()
    work_runs = []

    def write_invoice(delivery, connection):
        work_runs.append(delivery.attempt)
        app_db.database.execute(
            connection,
            f"INSERT INTO {billing} (message_id, amount) VALUES (?, ?)",
            (delivery.message_id, 7),
        )
        if delivery.attempt == 1:
            raise RuntimeError("the invoice printer jammed")  # rolls back the invoice and the row

    message_id = (
        Producer(channel, names.producer).publish(names.topic, names.key(), b"{}").message_id
    )
    run_until_delivered(channel, names, inbox.handler(write_invoice), message_id)

    assert work_runs == [1, 2]
    assert app_db.query(f"SELECT message_id, amount FROM {billing}") == [(message_id, 7)]
    assert app_db.query(f"SELECT message_id FROM {inbox.table}") == [(message_id,)]
