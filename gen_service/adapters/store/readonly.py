"""Synchronous read-only access for the commands (status, plan, report, export, review): the
database is read while the service writes to it (WAL).

Kept apart from :mod:`.core` on purpose: it imports nothing but ``sqlite3``, so
``gen-service status --json`` does not pay for the writer's imports (aiosqlite, the
near-duplicate index with datasketch and SciPy: ~0.4 s, SPEC §9.5 allows 0.2 s in all)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gen_service.errors import StoreError


def open_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StoreError(
            f"no database at {path} yet. Fix: start the service (gen-service run) or check "
            "[service].db in the config."
        )
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only = ON")
        return conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path} for reading: {exc}") from None


def query(
    conn: sqlite3.Connection, sql: str, params: Mapping[str, Any] | tuple[Any, ...] = ()
) -> list[sqlite3.Row]:
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"database query failed: {exc}") from None
