"""The transactional outbox: a row per message in the producer's own database, written in the
same local transaction as the business change, and the Checker's answers read from it.

Rows say COMMITTED (written by the producer's transaction) or ROLLED_BACK (a checker's
tombstone). A Check about a message without a row writes the tombstone under the same primary
key (INSERT .. ON CONFLICT DO NOTHING) before answering ROLLBACK. A producer transaction still in
flight then fails on that key and rolls back (and Cancels), so "no row" is a definitive ROLLBACK,
never a guess; and while the producer's insert is uncommitted, the checker's insert waits for it
(PostgreSQL's row lock, SQLite's write lock) and then sees COMMITTED.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Union

from ._values import Seconds, now_ms
from .database import Database, table_name
from .errors import RolledBackByChecker
from .producer import PreparedMessage, Producer
from .v1 import common_pb2

COMMITTED = "COMMITTED"
ROLLED_BACK = "ROLLED_BACK"


@dataclass(frozen=True)
class OutboxTransaction:
    """What the block of `Outbox.send` works with: the open connection and the message."""

    connection: Any
    message: PreparedMessage

    @property
    def message_id(self) -> str:
        return self.message.message_id


class Outbox:
    """`courier_outbox` in the producer's database, for one Producer."""

    def __init__(self, database: Database, producer: Producer, *, table: str = "courier_outbox"):
        self.database = database
        self.producer = producer
        self.table = table_name(table)

    def install(self) -> None:
        """Creates the table if it does not exist."""
        self.database.run_ddl(
            [
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                " message_id TEXT PRIMARY KEY,"
                " producer TEXT NOT NULL,"
                " message_key TEXT NOT NULL,"
                # COMMITTED: the producer's transaction; ROLLED_BACK: a checker's tombstone.
                " outcome TEXT NOT NULL,"
                " recorded_at_ms BIGINT NOT NULL)"
            ]
        )

    @contextlib.contextmanager
    def send(
        self,
        topic: str,
        key: str,
        payload: Union[bytes, str] = b"",
        *,
        headers: Optional[Mapping[str, str]] = None,
        check_after: Optional[Seconds] = None,
        deliver_after: Optional[Seconds] = None,
        ordering_key: str = "",
    ) -> Iterator[OutboxTransaction]:
        """Prepare; one local transaction with the outbox row and the block's writes; Confirm.

        The block gets the open connection (`tx.connection`) for its business writes; they
        commit together with the outbox row after the block. An exception rolls back and
        Cancels. RolledBackByChecker means the check-back answered ROLLBACK first.
        """
        with self.producer.send_in_transaction(
            topic,
            key,
            payload,
            headers=headers,
            check_after=check_after,
            deliver_after=deliver_after,
            ordering_key=ordering_key,
        ) as message:
            with self.database.transaction() as connection:
                self.record(connection, message)
                yield OutboxTransaction(connection, message)

    def record(self, connection, message: PreparedMessage) -> None:
        """Writes the COMMITTED row inside the caller's open transaction on `connection`.

        Raises RolledBackByChecker when a checker's tombstone holds the id: the transaction
        must then roll back.
        """
        try:
            self._insert(connection, message.message_id, message.producer, message.key, COMMITTED)
        except self.database.integrity_errors as error:
            raise RolledBackByChecker(message.message_id) from error

    def decide(self, message_id: str, producer: str, key: str) -> int:
        """The Checker's answer: DECISION_COMMIT or DECISION_ROLLBACK, never a guess."""
        with self.database.transaction() as connection:
            self._insert(connection, message_id, producer, key, ROLLED_BACK, if_absent=True)
            row = self.database.execute(
                connection, f"SELECT outcome FROM {self.table} WHERE message_id = ?", (message_id,)
            ).fetchone()
        if row[0] == COMMITTED:
            return common_pb2.DECISION_COMMIT
        return common_pb2.DECISION_ROLLBACK

    def _insert(self, connection, message_id, producer, key, outcome, *, if_absent=False):
        self.database.execute(
            connection,
            f"INSERT INTO {self.table} (message_id, producer, message_key, outcome, recorded_at_ms)"
            " VALUES (?, ?, ?, ?, ?)"
            + (" ON CONFLICT (message_id) DO NOTHING" if if_absent else ""),
            (message_id, producer, key, outcome, now_ms()),
        )
