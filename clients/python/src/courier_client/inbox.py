"""The inbox: each processed delivery recorded in the consumer's own database, in the same
transaction as the handler's writes, so "work done" and "message seen" never disagree.

A repeat (a redelivery after a lost Ack, a second lease after an expiry) finds its row and is
acknowledged without running the handler. While the first transaction is still open, a second
one waits on the row's key (PostgreSQL's row lock, SQLite's write lock) and then skips.
"""

from __future__ import annotations

from typing import Any, Callable

from ._values import now_ms
from .database import Database, table_name

BY_MESSAGE_ID = "message_id"
BY_PRODUCER_KEY = "producer_key"

Work = Callable[[Any, Any], None]  # work(delivery, connection), inside the inbox's transaction


class Inbox:
    """`courier_inbox` in the consumer's database.

    `dedup` chooses what makes two deliveries the same: BY_MESSAGE_ID (default), or
    BY_PRODUCER_KEY when a producer may send the same business event as a new message.
    Rows are per subscription: two subscriptions of one service each process a message once.
    """

    def __init__(
        self, database: Database, *, table: str = "courier_inbox", dedup: str = BY_MESSAGE_ID
    ):
        if dedup not in (BY_MESSAGE_ID, BY_PRODUCER_KEY):
            raise ValueError(f"dedup must be {BY_MESSAGE_ID!r} or {BY_PRODUCER_KEY!r}")
        self.database = database
        self.table = table_name(table)
        self.dedup = dedup

    def install(self) -> None:
        """Creates the table if it does not exist."""
        self.database.run_ddl(
            [
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                " subscription TEXT NOT NULL,"
                " dedup_key TEXT NOT NULL,"
                " message_id TEXT NOT NULL,"
                " processed_at_ms BIGINT NOT NULL,"
                " PRIMARY KEY (subscription, dedup_key))"
            ]
        )

    def handler(self, work: Work) -> Callable[[Any], None]:
        """A handler for Consumer (or serve_receiver) that runs `work(delivery, connection)` in
        one transaction with the inbox row, and skips deliveries already processed."""

        def handle(delivery) -> None:
            with self.database.transaction() as connection:
                if self.claim(connection, delivery):
                    work(delivery, connection)

        return handle

    def claim(self, connection, delivery) -> bool:
        """Records the delivery in the caller's open transaction; False if it was seen before."""
        cursor = self.database.execute(
            connection,
            f"INSERT INTO {self.table} (subscription, dedup_key, message_id, processed_at_ms)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (subscription, dedup_key) DO NOTHING",
            (delivery.subscription, self._dedup_key(delivery), delivery.message_id, now_ms()),
        )
        return cursor.rowcount == 1

    def seen(self, delivery) -> bool:
        with self.database.transaction() as connection:
            row = self.database.execute(
                connection,
                f"SELECT 1 FROM {self.table} WHERE subscription = ? AND dedup_key = ?",
                (delivery.subscription, self._dedup_key(delivery)),
            ).fetchone()
        return row is not None

    def _dedup_key(self, delivery) -> str:
        if self.dedup == BY_MESSAGE_ID:
            return delivery.message_id
        # A producer name cannot contain '/', so the pair cannot collide with another.
        return f"{delivery.producer}/{delivery.key}"
