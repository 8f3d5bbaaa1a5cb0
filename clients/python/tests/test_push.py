"""serve_receiver against a live Courier pushing to it: deliveries run the handler, an error is
retried, and calls without Courier's signed token are refused."""

from __future__ import annotations

import grpc
import pytest
from conftest import outcome_name, wait_for

from courier_client import Producer, connect, serve_receiver
from courier_client.v1 import common_pb2, receiver_pb2_grpc


def test_pushed_deliveries_run_the_handler_and_errors_are_retried(channel, admin, names, verifier):
    attempts = []

    def handler(delivery):
        attempts.append((delivery.message_id, delivery.attempt))
        if delivery.attempt == 1:
            raise ConnectionError("try again")

    with serve_receiver(handler, verifier=verifier) as receiver:
        admin.subscribe(
            names.subscription, names.topic, backoff=0.2, push_endpoint=receiver.endpoint
        )
        producer = Producer(channel, names.producer)
        message_id = producer.publish(names.topic, names.key(), b"{}").message_id
        wait_for(
            lambda: outcome_name(producer.status(message_id).outcome) == "MESSAGE_OUTCOME_DELIVERED"
        )
    assert attempts == [(message_id, 1), (message_id, 2)]


def test_calls_without_courier_token_are_refused(verifier):
    ran = []
    with serve_receiver(ran.append, verifier=verifier) as receiver:
        stub = receiver_pb2_grpc.ReceiverStub(connect(receiver.endpoint))
        forged = common_pb2.Delivery(message_id="m", subscription="s", receipt="r")
        with pytest.raises(grpc.RpcError) as raised:
            stub.Deliver(forged, timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as raised:
            stub.Deliver(forged, timeout=5, metadata=[("authorization", "Bearer not.a.jwt")])
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert ran == []
