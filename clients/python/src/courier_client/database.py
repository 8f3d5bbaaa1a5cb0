"""The producer's or consumer's own database, as the outbox and the inbox use it.

Two drivers: the standard library's sqlite3 and psycopg 3 (PostgreSQL). What differs between them
is only how a connection is opened, the parameter placeholder and which errors mean "this key is
taken" or "the commit may or may not have happened"; the SQL itself is shared.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from typing import Any, Callable, Iterator, Tuple, Type

from .errors import CommitOutcomeUnknown

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


def table_name(name: str) -> str:
    """A table name safe to put into SQL text (`name` or `schema.name`), or ValueError."""
    if not _TABLE_NAME.match(name):
        raise ValueError(f"table name {name!r}: letters, digits and _, optionally schema.table")
    return name


class Database:
    """Opens connections to one database and runs transactions on them.

    Build one with `Database.sqlite(path)` or `Database.postgres(conninfo)`; pass a
    `connect` callable to either to open connections your own way.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        placeholder: str,
        begin: str,
        integrity_errors: Tuple[Type[BaseException], ...],
        operational_errors: Tuple[Type[BaseException], ...],
    ) -> None:
        self._connect = connect
        self._placeholder = placeholder
        self._begin = begin
        self.integrity_errors = integrity_errors
        self._operational_errors = operational_errors

    @classmethod
    def sqlite(cls, path: str = "", *, timeout: float = 5.0, connect=None) -> "Database":
        """A SQLite file; `timeout` is how long a write waits for another writer's lock."""
        if connect is None:
            if not path:
                raise ValueError("Database.sqlite needs a file path (or a connect callable)")

            def connect():
                return sqlite3.connect(path, timeout=timeout)

        return cls(
            connect,
            placeholder="?",
            # Take the write lock first: a deferred transaction that reads, then writes, fails
            # with "database is locked" (or a stale WAL snapshot) instead of waiting its turn.
            begin="BEGIN IMMEDIATE",
            integrity_errors=(sqlite3.IntegrityError,),
            operational_errors=(sqlite3.OperationalError,),
        )

    @classmethod
    def postgres(cls, conninfo: str = "", *, connect=None) -> "Database":
        """PostgreSQL through psycopg 3 (`pip install "courier-client[postgres]"`)."""
        import psycopg

        if connect is None:

            def connect():
                return psycopg.connect(conninfo)

        return cls(
            connect,
            placeholder="%s",
            begin="",  # psycopg begins a transaction by itself before the first statement
            integrity_errors=(psycopg.IntegrityError,),
            operational_errors=(psycopg.OperationalError,),
        )

    def sql(self, text: str) -> str:
        """SQL written with `?` placeholders in this driver's style."""
        return text if self._placeholder == "?" else text.replace("?", self._placeholder)

    def execute(self, connection, text: str, params: tuple = ()):
        return connection.execute(self.sql(text), params)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A new connection in one write transaction: committed after the block, rolled back on
        error.

        A COMMIT that fails with an operational error (the connection dropped, say) may or may
        not have taken effect: that is raised as CommitOutcomeUnknown.
        """
        connection = self._connect()
        try:
            if self._begin:
                connection.execute(self._begin)
            try:
                yield connection
            except BaseException:
                connection.rollback()
                raise
            try:
                connection.commit()
            except self._operational_errors as error:
                raise CommitOutcomeUnknown(f"COMMIT failed: {error}") from error
        finally:
            connection.close()

    def run_ddl(self, statements) -> None:
        with self.transaction() as connection:
            for statement in statements:
                connection.execute(statement)
