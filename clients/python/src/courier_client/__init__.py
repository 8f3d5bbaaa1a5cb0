"""Courier's Python client.

- Producer: `Producer.send_in_transaction` (Prepare, your local transaction, Confirm or Cancel)
  and `Outbox` with `serve_checker` (a Checker that answers from your own database).
- Consumer: `Consumer` (receive, bounded concurrency, lease extension, ack/nack/reject, graceful
  shutdown) and `Inbox` (each message processed once, recorded in your own database).
- Push: `serve_receiver`, verifying Courier's signed calls with `CallbackVerifier`.
- Traces: with opentelemetry-api installed, the W3C trace context travels from the producer
  through Courier to the consumer and the Checker.

The generated gRPC stubs are in `courier_client.v1`.
"""

from .callback_auth import CallbackVerifier
from .channel import connect
from .checker import OutboxChecker, serve_checker
from .consumer import Consumer
from .database import Database
from .errors import (
    AlreadyDecided,
    CommitOutcomeUnknown,
    CourierClientError,
    PermanentError,
    RolledBackByChecker,
)
from .inbox import BY_MESSAGE_ID, BY_PRODUCER_KEY, Inbox
from .outbox import Outbox, OutboxTransaction
from .producer import PreparedMessage, Producer
from .receiver import HandlerReceiver, serve_receiver
from .servers import CallbackServer

__all__ = [
    "AlreadyDecided",
    "BY_MESSAGE_ID",
    "BY_PRODUCER_KEY",
    "CallbackServer",
    "CallbackVerifier",
    "CommitOutcomeUnknown",
    "Consumer",
    "CourierClientError",
    "Database",
    "HandlerReceiver",
    "Inbox",
    "Outbox",
    "OutboxChecker",
    "OutboxTransaction",
    "PermanentError",
    "PreparedMessage",
    "Producer",
    "RolledBackByChecker",
    "connect",
    "serve_checker",
    "serve_receiver",
]
