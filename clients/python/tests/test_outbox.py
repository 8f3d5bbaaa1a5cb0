"""The outbox and its Checker against a live Courier: check-back answers from the producer's own
database (sqlite3 and PostgreSQL), and the race between a check and a transaction in flight."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import receive, state_name, wait_for

from courier_client import Outbox, Producer, RolledBackByChecker, serve_checker
from courier_client.v1 import checker_pb2, checker_pb2_grpc, common_pb2


@pytest.fixture
def shop(channel, admin, names, app_db, verifier):
    """A producer with an installed outbox, an orders table, and its Checker registered."""
    admin.subscribe(names.subscription, names.topic)
    producer = Producer(channel, names.producer)
    outbox = Outbox(app_db.database, producer, table=app_db.table("courier_outbox"))
    outbox.install()
    orders = app_db.table("orders")
    app_db.execute(f"CREATE TABLE {orders} (order_no TEXT PRIMARY KEY, message_id TEXT NOT NULL)")
    server = serve_checker(outbox, verifier=verifier, timeout=2)
    yield Shop(producer, outbox, orders, app_db, server)
    server.stop()


class Shop:
    def __init__(self, producer, outbox, orders, app_db, checker):
        self.producer, self.outbox, self.orders, self.app_db = producer, outbox, orders, app_db
        self.checker = checker

    def insert_order(self, connection, order_no, message_id):
        self.app_db.database.execute(
            connection,
            f"INSERT INTO {self.orders} (order_no, message_id) VALUES (?, ?)",
            (order_no, message_id),
        )

    def orders_rows(self):
        return self.app_db.query(f"SELECT order_no FROM {self.orders}")

    def outbox_rows(self):
        return self.app_db.query(f"SELECT message_id, outcome FROM {self.outbox.table}")

    def settled_state(self, message_id):
        def settled():
            state = self.producer.status(message_id).state
            return None if state == common_pb2.MESSAGE_STATE_PREPARED else state_name(state)

        return wait_for(settled, timeout=20, interval=0.1)


def test_outbox_send_commits_row_and_business_write_together(shop, names, channel):
    with shop.outbox.send(names.topic, names.key(), b"{}") as tx:
        shop.insert_order(tx.connection, names.key(), tx.message_id)

    assert state_name(shop.producer.status(tx.message_id).state) == "MESSAGE_STATE_CONFIRMED"
    assert shop.outbox_rows() == [(tx.message_id, "COMMITTED")]
    assert shop.orders_rows() == [(names.key(),)]
    assert [d.message_id for d in receive(channel, names.subscription)] == [tx.message_id]


def test_outbox_send_rolls_back_both_and_cancels_on_error(shop, names):
    with pytest.raises(ZeroDivisionError):
        with shop.outbox.send(names.topic, names.key(), b"{}") as tx:
            shop.insert_order(tx.connection, names.key(), tx.message_id)
            raise ZeroDivisionError("a bug in the block")
    assert state_name(shop.producer.status(tx.message_id).state) == "MESSAGE_STATE_CANCELLED"
    assert shop.outbox_rows() == [] and shop.orders_rows() == []


def test_checker_answers_commit_for_a_transaction_that_committed_before_the_crash(
    shop, names, channel
):
    # The process "dies" after its local COMMIT, before Confirm: only the check-back can tell.
    message = shop.producer.prepare(names.topic, names.key(), b"{}", check_after=1)
    with shop.app_db.database.transaction() as connection:
        shop.insert_order(connection, names.key(), message.message_id)
        shop.outbox.record(connection, message)

    assert shop.settled_state(message.message_id) == "MESSAGE_STATE_CONFIRMED"
    assert [d.message_id for d in receive(channel, names.subscription)] == [message.message_id]


def test_checker_answers_rollback_with_a_tombstone_when_nothing_committed(shop, names):
    # The process "dies" after Prepare, before its transaction wrote anything.
    message = shop.producer.prepare(names.topic, names.key(), b"{}", check_after=1)

    assert shop.settled_state(message.message_id) == "MESSAGE_STATE_CANCELLED"
    assert shop.outbox_rows() == [(message.message_id, "ROLLED_BACK")]


def test_a_transaction_that_loses_the_race_to_the_check_rolls_back_and_cancels(shop, names):
    # The transaction is slow: Courier's check-back comes first, finds no row, writes the
    # tombstone and answers ROLLBACK. The late transaction must not commit its order. On
    # PostgreSQL the transaction is already open with its order written when the check comes;
    # SQLite's transactions here take the write lock at BEGIN, so there the check can only come
    # before BEGIN (a check during the transaction waits for it: the next test).
    already_open = shop.app_db.kind == "postgres"
    with pytest.raises(RolledBackByChecker):
        with shop.producer.send_in_transaction(
            names.topic, names.key(), b"{}", check_after=1
        ) as message:
            if not already_open:
                shop.settled_state(message.message_id)
            with shop.app_db.database.transaction() as connection:
                shop.insert_order(connection, names.key(), message.message_id)
                if already_open:
                    shop.settled_state(message.message_id)  # waits for the check-back's decision
                shop.outbox.record(connection, message)

    assert state_name(shop.producer.status(message.message_id).state) == "MESSAGE_STATE_CANCELLED"
    assert shop.orders_rows() == []
    assert shop.outbox_rows() == [(message.message_id, "ROLLED_BACK")]


def test_a_check_during_an_uncommitted_transaction_waits_for_it_and_answers_commit(
    shop, names, channel
):
    # A Check arrives while the producer's row is written but not committed: the Checker's
    # tombstone insert waits on the row's key, then sees the committed row.
    message = shop.producer.prepare(names.topic, names.key(), b"{}")
    row_written, commit_now = threading.Event(), threading.Event()

    def producer_transaction():
        with shop.app_db.database.transaction() as connection:
            shop.outbox.record(connection, message)
            shop.insert_order(connection, names.key(), message.message_id)
            row_written.set()
            commit_now.wait(10)

    producer_thread = threading.Thread(target=producer_transaction)
    producer_thread.start()
    assert row_written.wait(10)

    answers = []

    def check():  # what the Checker runs for a Check
        answers.append(shop.outbox.decide(message.message_id, names.producer, names.key()))

    checker_thread = threading.Thread(target=check)
    checker_thread.start()
    time.sleep(0.5)
    assert answers == [], "the Checker answered before the transaction ended"
    commit_now.set()
    producer_thread.join(10)
    checker_thread.join(10)
    assert answers == [common_pb2.DECISION_COMMIT]
    assert shop.outbox_rows() == [(message.message_id, "COMMITTED")]


def test_the_checker_refuses_calls_without_courier_token(shop, names):
    stub = checker_pb2_grpc.CheckerStub(channel_to(shop.checker.endpoint))
    with pytest.raises(Exception) as raised:
        stub.Check(
            checker_pb2.CheckRequest(message_id="x", producer=names.producer, key="k"), timeout=5
        )
    assert raised.value.code().name == "UNAUTHENTICATED"
    assert shop.outbox_rows() == []  # refused before the database was touched


def channel_to(endpoint: str):
    from courier_client import connect

    return connect(endpoint)


def test_the_checker_answers_unknown_when_its_database_cannot_answer(channel, names, tmp_path):
    from courier_client import Database

    producer = Producer(channel, names.producer)
    outbox = Outbox(Database.sqlite(str(tmp_path / "empty.db")), producer)  # never installed
    server = serve_checker(outbox, register=False)
    try:
        stub = checker_pb2_grpc.CheckerStub(channel_to(server.endpoint))
        answer = stub.Check(
            checker_pb2.CheckRequest(message_id="m", producer=names.producer, key="k"), timeout=5
        )
    finally:
        server.stop()
    assert answer.decision == common_pb2.DECISION_UNKNOWN
