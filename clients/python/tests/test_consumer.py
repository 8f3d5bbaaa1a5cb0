"""The Consumer loop against a live Courier: ack, nack, reject, lease extension, bounded
concurrency and graceful shutdown."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import outcome_name, receive, wait_for

from courier_client import Consumer, PermanentError, Producer
from courier_client.v1 import common_pb2


@pytest.fixture
def publish(channel, names):
    producer = Producer(channel, names.producer)

    def publish(n: int = 1, payload: bytes = b"{}") -> str:
        return producer.publish(names.topic, names.key(n), payload).message_id

    publish.producer = producer
    return publish


@pytest.fixture
def consumers():
    started = []

    def start(*args, **kwargs) -> Consumer:
        consumer = Consumer(*args, **kwargs).start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        consumer.stop()


def outcome(publish, message_id):
    return outcome_name(publish.producer.status(message_id).outcome)


def test_a_handler_that_returns_acks(channel, admin, names, publish, consumers):
    admin.subscribe(names.subscription, names.topic)
    seen = []
    consumers(channel, names.subscription, lambda d: seen.append((d.message_id, d.attempt)), wait=1)
    message_id = publish()
    wait_for(lambda: outcome(publish, message_id) == "MESSAGE_OUTCOME_DELIVERED")
    assert seen == [(message_id, 1)]


def test_a_retryable_error_nacks_and_the_delivery_comes_again(
    channel, admin, names, publish, consumers
):
    admin.subscribe(names.subscription, names.topic, backoff=0.2)
    attempts = []

    def flaky(delivery):
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            raise ConnectionError("the ledger is down")

    consumers(channel, names.subscription, flaky, wait=1)
    message_id = publish()
    wait_for(lambda: outcome(publish, message_id) == "MESSAGE_OUTCOME_DELIVERED")
    assert attempts == [1, 2]
    [delivery] = admin.deliveries(names.subscription)
    assert "the ledger is down" in delivery.last_error


def test_a_permanent_error_rejects_with_its_text(channel, admin, names, publish, consumers):
    admin.subscribe(names.subscription, names.topic)
    calls = []

    def poison(delivery):
        calls.append(delivery.attempt)
        raise PermanentError("payload is not an order")

    consumers(channel, names.subscription, poison, wait=1)
    message_id = publish()
    wait_for(lambda: outcome(publish, message_id) == "MESSAGE_OUTCOME_DEAD_LETTERED")
    [delivery] = admin.deliveries(names.subscription)
    assert delivery.state == common_pb2.DELIVERY_STATE_DEAD
    assert "payload is not an order" in delivery.last_error
    assert calls == [1]


def test_a_custom_exception_class_can_be_permanent(channel, admin, names, publish, consumers):
    admin.subscribe(names.subscription, names.topic)

    def bad(delivery):
        raise ValueError("bad total")

    consumers(channel, names.subscription, bad, wait=1, permanent_errors=(ValueError,))
    message_id = publish()
    wait_for(lambda: outcome(publish, message_id) == "MESSAGE_OUTCOME_DEAD_LETTERED")


def test_leases_are_extended_while_a_slow_handler_runs(channel, admin, names, publish, consumers):
    admin.subscribe(names.subscription, names.topic, ack_deadline=2)
    attempts = []

    def slow(delivery):
        attempts.append(delivery.attempt)
        time.sleep(5)  # two and a half ack deadlines

    consumer = consumers(channel, names.subscription, slow, wait=1)
    message_id = publish()
    wait_for(lambda: attempts)
    # Nobody else gets it while the handler runs: the lease is kept alive.
    assert receive(channel, names.subscription, wait=3) == []
    wait_for(lambda: outcome(publish, message_id) == "MESSAGE_OUTCOME_DELIVERED", timeout=10)
    assert attempts == [1]
    assert consumer._leases.extensions >= 2


def test_concurrency_is_bounded(channel, admin, names, publish, consumers):
    admin.subscribe(names.subscription, names.topic)
    lock = threading.Lock()
    running, most = [0], [0]

    def handler(delivery):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1

    ids = [publish(n) for n in range(6)]
    consumers(channel, names.subscription, handler, concurrency=2, wait=1)
    wait_for(lambda: all(outcome(publish, i) == "MESSAGE_OUTCOME_DELIVERED" for i in ids))
    assert most[0] == 2


def test_shutdown_lets_running_work_finish_within_the_grace(
    channel, admin, names, publish, consumers
):
    admin.subscribe(names.subscription, names.topic)
    started, finished = threading.Event(), []

    def handler(delivery):
        started.set()
        time.sleep(1)
        finished.append(delivery.message_id)

    consumer = consumers(channel, names.subscription, handler, wait=1, shutdown_grace=5)
    message_id = publish()
    assert started.wait(10)
    consumer.stop()
    assert finished == [message_id]
    assert outcome(publish, message_id) == "MESSAGE_OUTCOME_DELIVERED"


def test_shutdown_gives_back_work_still_running_after_the_grace(
    channel, admin, names, publish, consumers
):
    admin.subscribe(names.subscription, names.topic, ack_deadline=60)
    started, release = threading.Event(), threading.Event()

    def stuck(delivery):
        started.set()
        release.wait(30)

    consumer = consumers(channel, names.subscription, stuck, wait=1, shutdown_grace=0.5)
    message_id = publish()
    assert started.wait(10)
    began = time.monotonic()
    consumer.stop()
    assert time.monotonic() - began < 5
    # Given back with no delay: receivable now, not after the 60 s ack deadline.
    [again] = receive(channel, names.subscription, wait=2)
    assert (again.message_id, again.attempt) == (message_id, 2)
    release.set()
    time.sleep(0.2)  # the stuck handler returns; its result must not settle the new lease
    [delivery] = admin.deliveries(names.subscription)
    assert delivery.state == common_pb2.DELIVERY_STATE_LEASED
