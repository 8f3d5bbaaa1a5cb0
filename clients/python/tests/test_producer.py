"""Producer.send_in_transaction against a live Courier: the two phases around a local
transaction, with the producer's database being plain sqlite3 or PostgreSQL."""

from __future__ import annotations

import grpc
import pytest
from conftest import receive, state_name, wait_for

from courier_client import AlreadyDecided, Producer


class OrderFailed(Exception):
    pass


def create_orders(app_db):
    orders = app_db.table("orders")
    app_db.execute(f"CREATE TABLE {orders} (order_no TEXT PRIMARY KEY, message_id TEXT NOT NULL)")
    return orders


def test_send_commits_and_the_message_is_delivered(channel, admin, names, app_db):
    admin.subscribe(names.subscription, names.topic)
    orders = create_orders(app_db)
    producer = Producer(channel, names.producer)

    with producer.send_in_transaction(names.topic, names.key(), b'{"total": 42}') as message:
        assert state_name(message.state) == "MESSAGE_STATE_PREPARED"
        assert state_name(producer.status(message.message_id).state) == "MESSAGE_STATE_PREPARED"
        app_db.execute(
            f"INSERT INTO {orders} (order_no, message_id) VALUES (?, ?)",
            (names.key(), message.message_id),
        )

    assert state_name(producer.status(message.message_id).state) == "MESSAGE_STATE_CONFIRMED"
    assert app_db.query(f"SELECT message_id FROM {orders}") == [(message.message_id,)]
    deliveries = receive(channel, names.subscription)
    assert [(d.message_id, d.key, d.payload) for d in deliveries] == [
        (message.message_id, names.key(), b'{"total": 42}')
    ]


def test_an_exception_in_the_transaction_cancels_and_is_raised_again(channel, admin, names, app_db):
    admin.subscribe(names.subscription, names.topic)
    orders = create_orders(app_db)
    producer = Producer(channel, names.producer)

    with pytest.raises(OrderFailed):
        with producer.send_in_transaction(names.topic, names.key(), b"{}") as message:
            with app_db.database.transaction() as connection:
                app_db.database.execute(
                    connection,
                    f"INSERT INTO {orders} (order_no, message_id) VALUES (?, ?)",
                    (names.key(), message.message_id),
                )
                raise OrderFailed("out of stock")

    assert state_name(producer.status(message.message_id).state) == "MESSAGE_STATE_CANCELLED"
    assert app_db.query(f"SELECT * FROM {orders}") == []
    assert receive(channel, names.subscription, wait=0) == []


def test_a_key_already_decided_does_not_run_the_transaction_again(channel, admin, names):
    admin.subscribe(names.subscription, names.topic)
    producer = Producer(channel, names.producer)
    with producer.send_in_transaction(names.topic, names.key(), b"same") as first:
        pass

    ran = []
    with pytest.raises(AlreadyDecided) as raised:
        with producer.send_in_transaction(names.topic, names.key(), b"same"):
            ran.append(True)
    assert ran == []
    assert raised.value.message_id == first.message_id
    assert raised.value.state == "MESSAGE_STATE_CONFIRMED"


def test_prepare_errors_reach_the_caller_as_grpc_codes(channel, names):
    producer = Producer(channel, names.producer)
    with pytest.raises(grpc.RpcError) as raised:  # no subscription on the topic
        with producer.send_in_transaction(names.topic, names.key(), b"x"):
            pytest.fail("the block ran without a prepared message")
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_publish_and_status(channel, admin, names):
    admin.subscribe(names.subscription, names.topic)
    producer = Producer(channel, names.producer)
    published = producer.publish(names.topic, names.key(), "text payload", headers={"k": "v"})
    assert state_name(published.state) == "MESSAGE_STATE_CONFIRMED"
    [delivery] = wait_for(lambda: receive(channel, names.subscription, wait=1))
    assert (delivery.payload, dict(delivery.headers)) == (b"text payload", {"k": "v"})
