"""A ready Checker: answers Courier's check-backs from the producer's outbox."""

from __future__ import annotations

import logging
from typing import Optional

import grpc

from . import tracing
from .callback_auth import CallbackVerifier
from .outbox import Outbox
from .servers import CallbackServer
from .v1 import checker_pb2, checker_pb2_grpc, common_pb2

log = logging.getLogger("courier_client.checker")


class OutboxChecker(checker_pb2_grpc.CheckerServicer):
    """courier.v1.Checker over an Outbox: COMMIT or ROLLBACK from the table, UNKNOWN when the
    database cannot answer (Courier asks again later)."""

    def __init__(self, outbox: Outbox, *, verifier: Optional[CallbackVerifier] = None) -> None:
        self.outbox = outbox
        self.verifier = verifier
        self.endpoint = (
            ""  # the registered URL, the `aud` of Courier's tokens; set by serve_checker
        )

    def Check(self, request, context):  # noqa: N802 (the gRPC method name)
        if self.verifier is not None:
            self.verifier.require(
                context,
                audience=self.endpoint,
                subject=request.producer,
                message_id=request.message_id,
            )
        with tracing.call_context(context):
            try:
                decision = self.outbox.decide(request.message_id, request.producer, request.key)
            except Exception as error:  # the database did not answer: not a decision
                log.warning("check of message %s: %s; answering UNKNOWN", request.message_id, error)
                decision = common_pb2.DECISION_UNKNOWN
        return checker_pb2.CheckResponse(decision=decision)


def serve_checker(
    outbox: Outbox,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    verifier: Optional[CallbackVerifier] = None,
    advertise: Optional[str] = None,
    register: bool = True,
    timeout: Optional[float] = None,
) -> CallbackServer:
    """Starts an OutboxChecker and (by default) registers it for the outbox's producer.

    `advertise` is the URL Courier calls when it differs from `http://host:port` (another
    host, a proxy). `timeout` is the deadline of each Check (Courier's default when unset).
    """
    checker = OutboxChecker(outbox, verifier=verifier)

    def add(server: grpc.Server) -> None:
        checker_pb2_grpc.add_CheckerServicer_to_server(checker, server)

    server = CallbackServer(add, host=host, port=port, advertise=advertise)
    checker.endpoint = server.endpoint
    if register:
        outbox.producer.register_checker(server.endpoint, timeout=timeout)
    return server
