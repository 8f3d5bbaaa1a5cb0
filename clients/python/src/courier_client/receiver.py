"""Push delivery: a Receiver server that runs a handler for each delivery Courier pushes."""

from __future__ import annotations

import logging
from typing import Callable, Optional

import grpc

from . import tracing
from .callback_auth import CallbackVerifier
from .servers import CallbackServer
from .v1 import receiver_pb2, receiver_pb2_grpc

log = logging.getLogger("courier_client.receiver")

Handler = Callable[[object], None]


class HandlerReceiver(receiver_pb2_grpc.ReceiverServicer):
    """courier.v1.Receiver: OK (Courier acks) when the handler returns; an error status (Courier
    retries with the subscription's backoff, then parks it DEAD) when it raises."""

    def __init__(self, handler: Handler, *, verifier: Optional[CallbackVerifier] = None) -> None:
        self.handler = handler
        self.verifier = verifier
        self.endpoint = ""  # the push_endpoint, the `aud` of Courier's tokens

    def Deliver(self, delivery, context):  # noqa: N802 (the gRPC method name)
        if self.verifier is not None:
            self.verifier.require(
                context,
                audience=self.endpoint,
                subject=delivery.subscription,
                message_id=delivery.message_id,
            )
        with tracing.delivery_context(delivery):
            try:
                self.handler(delivery)
            except Exception as error:
                log.warning("delivery of %s failed: %s", delivery.message_id, error)
                context.abort(
                    grpc.StatusCode.UNAVAILABLE, f"handler failed: {type(error).__name__}"
                )
        return receiver_pb2.DeliverResponse()


def serve_receiver(
    handler: Handler,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    verifier: Optional[CallbackVerifier] = None,
    advertise: Optional[str] = None,
    max_workers: int = 8,
) -> CallbackServer:
    """Starts a Receiver; give its `endpoint` as the subscription's push_endpoint."""
    receiver = HandlerReceiver(handler, verifier=verifier)

    def add(server: grpc.Server) -> None:
        receiver_pb2_grpc.add_ReceiverServicer_to_server(receiver, server)

    server = CallbackServer(add, host=host, port=port, advertise=advertise, max_workers=max_workers)
    receiver.endpoint = server.endpoint
    return server
