"""The exceptions the client raises, and the one a handler raises to reject a delivery."""

from __future__ import annotations


class CourierClientError(Exception):
    """Base of the errors this package raises itself (gRPC failures stay grpc.RpcError)."""


class PermanentError(Exception):
    """Raised by a handler for a delivery that can never succeed (a poison message).

    The consumer Rejects it: the delivery becomes DEAD at once, with this exception's text as
    its reason, instead of being retried. Any other exception is retried (Nack).
    """


class AlreadyDecided(CourierClientError):
    """Prepare found this producer key on a message that is already CONFIRMED or CANCELLED.

    Keys are one-shot: the business action behind the key was sent (or given up) before, so the
    local transaction is not run again.
    """

    def __init__(self, message_id: str, key: str, state: str) -> None:
        super().__init__(f"key {key!r} belongs to message {message_id}, already {state}")
        self.message_id = message_id
        self.key = key
        self.state = state


class RolledBackByChecker(CourierClientError):
    """The local transaction lost the race with a check-back.

    Courier asked the Checker about this message before the transaction committed; the Checker
    found no outbox row, wrote a tombstone in its place and answered ROLLBACK. The transaction
    hit that tombstone and was rolled back, so Cancel agrees with what the Checker said.
    """

    def __init__(self, message_id: str) -> None:
        super().__init__(
            f"message {message_id}: the Checker answered ROLLBACK before the local transaction "
            "committed; the transaction was rolled back"
        )
        self.message_id = message_id


class CommitOutcomeUnknown(CourierClientError):
    """COMMIT of the local transaction failed in a way that does not say whether it took effect.

    The message is left PREPARED, neither confirmed nor cancelled: Courier's check-back asks the
    Checker, which answers from the database itself.
    """
