"""SQLite write transactions that roll back completely and fail as a service's own error."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from smtestbed.services._runtime.errors import TestbedError

__all__ = ["write_transaction"]


@contextmanager
def write_transaction(
    db: sqlite3.Connection, *, path: Path, error: type[TestbedError]
) -> Iterator[sqlite3.Connection]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction; roll it back on any error.

    ``db`` must be in autocommit mode (``isolation_level=None``); the caller holds whatever
    lock keeps other threads off the connection.

    Raises:
        TestbedError: ``error`` (``"{path}: transaction failed: ..."``) when SQLite refuses a
            statement or the commit; nothing of the block is kept.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise error(f"{path}: transaction failed: {exc}") from exc
