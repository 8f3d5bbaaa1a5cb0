"""The producer side: Prepare, Confirm, Cancel, Publish, and the two phases around a transaction."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Union

import grpc

from . import tracing
from ._values import Seconds, duration, headers_map, payload_bytes
from .errors import AlreadyDecided, CommitOutcomeUnknown
from .v1 import common_pb2, producer_pb2, producer_pb2_grpc

log = logging.getLogger("courier_client.producer")

DEFAULT_TIMEOUT = 10.0  # seconds per call


@dataclass(frozen=True)
class PreparedMessage:
    """A message Courier holds as PREPARED (or found again under the same key)."""

    message_id: str
    producer: str
    topic: str
    key: str
    created: bool
    state: int

    @property
    def state_name(self) -> str:
        return common_pb2.MessageState.Name(self.state)


class Producer:
    """Courier's Producer service for one producer name.

    `with producer.send_in_transaction(topic, key, payload) as message:` runs the two phases:
    Prepare before the block, Confirm after it, Cancel if it raises. The message id is at hand
    inside the block (`message.message_id`) for the local transaction to store. If the process
    dies inside the block or before Confirm, the message stays PREPARED and Courier asks the
    registered Checker (see `Outbox` for one that answers from the producer's own database).
    """

    def __init__(self, channel: grpc.Channel, producer: str, *, timeout: float = DEFAULT_TIMEOUT):
        self.name = producer
        self.timeout = timeout
        self._stub = producer_pb2_grpc.ProducerStub(channel)

    # ---- the two phases --------------------------------------------------------------------

    @contextlib.contextmanager
    def send_in_transaction(
        self,
        topic: str,
        key: str,
        payload: Union[bytes, str] = b"",
        *,
        headers: Optional[Mapping[str, str]] = None,
        check_after: Optional[Seconds] = None,
        deliver_after: Optional[Seconds] = None,
        ordering_key: str = "",
    ) -> Iterator[PreparedMessage]:
        """Prepare; run the block (the caller's local transaction); Confirm, or Cancel on error.

        Raises AlreadyDecided, without running the block, when the key belongs to a message that
        is already CONFIRMED or CANCELLED. An exception from the block Cancels the message and is
        raised again, except CommitOutcomeUnknown (the local COMMIT may have taken effect): then
        the message is left PREPARED for the check-back to decide. A failed Confirm is raised as
        it is; the message stays PREPARED and the check-back decides.
        """
        message = self.prepare(
            topic,
            key,
            payload,
            headers=headers,
            check_after=check_after,
            deliver_after=deliver_after,
            ordering_key=ordering_key,
        )
        if message.state != common_pb2.MESSAGE_STATE_PREPARED:
            raise AlreadyDecided(message.message_id, key, message.state_name)
        try:
            yield message
        except CommitOutcomeUnknown:
            log.warning(
                "commit outcome unknown; message %s left for check-back", message.message_id
            )
            raise
        except BaseException as error:
            self._cancel_after(error, message)
            raise
        self.confirm(message.message_id)

    def _cancel_after(self, error: BaseException, message: PreparedMessage) -> None:
        """Cancels after the local transaction failed; a failing Cancel never hides `error`."""
        try:
            self.cancel(message.message_id)
        except grpc.RpcError as cancel_error:
            log.warning(
                "cancel of message %s after %s failed (%s); the check-back will decide",
                message.message_id,
                type(error).__name__,
                cancel_error.code() if hasattr(cancel_error, "code") else cancel_error,
            )

    # ---- single calls ----------------------------------------------------------------------

    def prepare(
        self,
        topic: str,
        key: str,
        payload: Union[bytes, str] = b"",
        *,
        headers: Optional[Mapping[str, str]] = None,
        check_after: Optional[Seconds] = None,
        deliver_after: Optional[Seconds] = None,
        ordering_key: str = "",
    ) -> PreparedMessage:
        request = producer_pb2.PrepareRequest(
            producer=self.name,
            topic=topic,
            key=key,
            payload=payload_bytes(payload),
            headers=headers_map(headers),
            check_after=duration(check_after),
            deliver_after=duration(deliver_after),
            ordering_key=ordering_key,
        )
        response = self._stub.Prepare(
            request, timeout=self.timeout, metadata=tracing.outgoing_metadata()
        )
        return PreparedMessage(
            response.message_id, self.name, topic, key, response.created, response.state
        )

    def publish(
        self,
        topic: str,
        key: str,
        payload: Union[bytes, str] = b"",
        *,
        headers: Optional[Mapping[str, str]] = None,
        deliver_after: Optional[Seconds] = None,
        ordering_key: str = "",
    ) -> PreparedMessage:
        """Prepare and Confirm in one call, for messages that follow no local transaction."""
        request = producer_pb2.PublishRequest(
            producer=self.name,
            topic=topic,
            key=key,
            payload=payload_bytes(payload),
            headers=headers_map(headers),
            deliver_after=duration(deliver_after),
            ordering_key=ordering_key,
        )
        response = self._stub.Publish(
            request, timeout=self.timeout, metadata=tracing.outgoing_metadata()
        )
        return PreparedMessage(
            response.message_id, self.name, topic, key, response.created, response.state
        )

    def confirm(self, message_id: str) -> int:
        """Confirms (idempotent); returns the message state."""
        request = producer_pb2.ConfirmRequest(message=_ref(message_id))
        return self._stub.Confirm(request, timeout=self.timeout).state

    def cancel(self, message_id: str) -> int:
        """Cancels (idempotent); returns the message state."""
        request = producer_pb2.CancelRequest(message=_ref(message_id))
        return self._stub.Cancel(request, timeout=self.timeout).state

    def status(self, message_id: str) -> common_pb2.Message:
        """The message with its state, outcome and every delivery (CheckStatus)."""
        request = producer_pb2.CheckStatusRequest(message=_ref(message_id))
        return self._stub.CheckStatus(request, timeout=self.timeout).message

    def register_checker(self, endpoint: str, *, timeout: Optional[Seconds] = None) -> None:
        """Tells Courier where this producer's Checker listens (`http://host:port`)."""
        request = producer_pb2.RegisterCheckerRequest(
            producer=self.name, endpoint=endpoint, timeout=duration(timeout)
        )
        self._stub.RegisterChecker(request, timeout=self.timeout)


def _ref(message_id: str) -> common_pb2.MessageRef:
    return common_pb2.MessageRef(message_id=message_id)
