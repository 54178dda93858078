"""The SQLite store: the source of truth, and its schema is part of the interface.

WAL mode so ``gen-service status`` and ``sqlite3`` read while the service writes; one writer
task commits each batch in one transaction with ``synchronous=FULL``, so a committed sample
survives kill -9 and power loss. Counters per (data type, day) are kept by triggers, which keeps
``progress`` fast on millions of rows and right after manual edits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from gen_service.adapters.store import batches
from gen_service.adapters.store.batches import NearDuplicates
from gen_service.adapters.store.near_index import NearIndex
from gen_service.adapters.store.quality import QualityQueries
from gen_service.adapters.store.readonly import open_readonly as open_readonly  # re-exported
from gen_service.adapters.store.readonly import query as query  # re-exported
from gen_service.adapters.store.schema import MIGRATIONS, SCHEMA_VERSION
from gen_service.domain.records import BatchRecord, CommitResult
from gen_service.errors import StoreError, StoreUnavailable

WAL_SIZE_LIMIT = 32 * 2**20  # bytes the -wal file is cut back to after a long reader
# The writer's page cache: twice SQLite's default. The writer's reads are the exact-duplicate
# lookup (a random hash per sample in the accepted-hash index) and the few candidates'
# signatures; the near-duplicate index is in memory (adapters/store/near_index.py).
WRITER_CACHE_KIB = 4 * 1024
BUSY_TIMEOUT_MS = 10_000


def _system_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    """The timestamp format of every ``*_at`` column: UTC ISO-8601 with milliseconds."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def utc_offset_modifier(tz: dt.tzinfo, now: dt.datetime) -> str:
    """The SQLite date modifier that turns UTC 'now' into the zone's wall clock."""
    offset = now.astimezone(tz).utcoffset() or dt.timedelta()
    return f"{int(offset.total_seconds() // 60):+d} minutes"


@dataclass(frozen=True, slots=True)
class TypeCounts:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    accepted_today: int = 0


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: int
    started_at: str


class Store(QualityQueries):
    """Async access for the service. Exactly one writer task uses the write methods."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        now: Callable[[], dt.datetime] = _system_now,
    ) -> None:
        self._conn = conn
        self.path = path
        self.near: NearDuplicates | None = None  # how near-duplicates are decided; None: off
        self._index: NearIndex | None = None  # the near-duplicate index, with ``near``
        self._now = now  # the service's Clock, so a scaled clock's runs stamp scaled times
        # One connection, several tasks (writer, scheduler, reload): a statement from one must
        # never land inside another's open transaction.
        self._lock = anyio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: Path, *, now: Callable[[], dt.datetime] = _system_now
    ) -> AsyncIterator[Store]:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the database {path}: {exc}. Fix: check that the folder exists "
                "and is writable, or point [service].db at another file."
            ) from None
        try:
            await _prepare(conn, path)
            yield cls(conn, path, now)
        finally:
            # Shielded: a close cancelled half-way leaves the connection's thread running after
            # the event loop is gone, and it dies with "Event loop is closed" at exit.
            with anyio.CancelScope(shield=True):
                await conn.close()

    # -- runs and settings -------------------------------------------------------------------

    async def start_run(
        self,
        *,
        version: str,
        config_path: str,
        mode: str,
        backend: str | None = None,
        test_double: bool = False,
    ) -> RunInfo:
        """A new row in ``runs``. ``test_double``: the backend is a fake, so every sample of
        this run is test data (the export leaves it out unless asked)."""
        started = self._stamp()
        # A run still marked running was killed (SIGKILL, power loss): say so.
        await self._execute("UPDATE runs SET status = 'crashed' WHERE status = 'running'", ())
        cur = await self._execute(
            "INSERT INTO runs (started_at, pid, host, version, config_path, mode, backend,"
            " test_double) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                started,
                os.getpid(),
                socket.gethostname(),
                version,
                config_path,
                mode,
                backend,
                int(test_double),
            ),
        )
        assert cur.lastrowid is not None
        return RunInfo(cur.lastrowid, started)

    async def finish_run(self, run_id: int, status: str) -> None:
        await self._execute(
            "UPDATE runs SET ended_at = ?, status = ? WHERE id = ?", (self._stamp(), status, run_id)
        )

    async def set_targets(
        self, targets: Iterable[tuple[str, str, int, int]], tz: dt.tzinfo
    ) -> None:
        """Record (datatype, model, daily, total) for the progress view, and the zone."""
        now = self._stamp()
        async with self._transaction():
            await self._conn.execute("DELETE FROM targets")
            await self._conn.executemany(
                "INSERT INTO targets (datatype, model, daily_target, total_target, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(d, m, daily, total, now) for d, m, daily, total in targets],
            )
            await self._set_setting("utc_offset_modifier", utc_offset_modifier(tz, self._now()))

    async def refresh_day(self, tz: dt.tzinfo) -> None:
        """Keep the stored UTC offset current across DST changes."""
        async with self._transaction():
            await self._set_setting("utc_offset_modifier", utc_offset_modifier(tz, self._now()))

    async def _set_setting(self, key: str, value: str) -> None:
        await self._conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- batches -----------------------------------------------------------------------------

    async def commit_batch(self, run_id: int | None, batch: BatchRecord) -> CommitResult:
        """Insert a batch and its samples in one transaction, deciding exact and near
        duplicates and clusters (see :mod:`gen_service.adapters.store.batches`)."""
        result: CommitResult = await self._run(
            batches.commit_batch, run_id, batch, self.near, self._index
        )
        return result

    async def commit_batches(
        self, run_id: int | None, records: Sequence[BatchRecord]
    ) -> list[CommitResult]:
        """Several batches, in order, in one transaction (each decided as
        :meth:`commit_batch` decides it): all of them or none."""
        results: list[CommitResult] = await self._run(
            batches.commit_batches, run_id, list(records), self.near, self._index
        )
        return results

    async def use_near_duplicates(self, near: NearDuplicates | None) -> int | None:
        """Decide near-duplicates with ``near`` from now on. The index is built from the
        stored signatures when there is none yet (at start) or the band layout changed (the
        cluster threshold did); returns how many samples it then holds, or None when the
        index in memory was kept."""
        if near is None:
            self.near, self._index = None, None
            return None
        if self._index is not None and self._index.layout == near.layout:
            self.near = near
            return None
        index: NearIndex = await self._run(NearIndex.load, near.layout)
        self.near, self._index = near, index
        return index.samples

    @property
    def near_index(self) -> NearIndex | None:
        """The near-duplicate index in memory (None while near-duplicates are off)."""
        return self._index

    async def sweep_near_duplicates(
        self, limit: int, signature_of: Callable[[str, str], bytes]
    ) -> batches.SweepChunk:
        """One chunk of the near-duplicate sweep (see :func:`batches.sweep_chunk`)."""
        if self.near is None or self._index is None:
            return batches.SweepChunk(0, 0)
        chunk: batches.SweepChunk = await self._run(
            batches.sweep_chunk, self.near, self._index, limit, signature_of
        )
        return chunk

    async def trim_wal(self) -> int | None:
        """Cut the ``-wal`` file back when it is over ``WAL_SIZE_LIMIT`` and no reader needs
        it: SQLite truncates it itself only when a later commit restarts the log, so after a
        long reader lets go an idle service would keep the large file for hours. Never waits
        for a reader (one still reading: nothing happens, the next idle tick tries again).
        Returns the bytes the file went down by, or None when nothing was done."""
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            before = wal.stat().st_size
        except OSError:
            return None
        if before <= WAL_SIZE_LIMIT:
            return None
        await self._run(_checkpoint_truncate)
        try:
            after = wal.stat().st_size
        except OSError:
            after = 0
        return before - after if after < before else None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(connection, *args)`` on the connection's own worker thread (aiosqlite's queue:
        one hop from the event loop for a whole unit of work), under the store's lock; SQLite's
        errors become StoreError, or StoreUnavailable when the disk refuses writes."""
        async with self._lock:
            try:
                return await self._conn._execute(  # type: ignore[no-untyped-call]
                    fn, self._conn._conn, *args
                )
            except sqlite3.Error as exc:
                raise store_error(exc, self.path, "a transaction failed") from exc

    async def type_counts(self, day: str) -> dict[str, TypeCounts]:
        """Accepted / rejected / duplicate totals per data type, and accepted on ``day``."""
        async with self._conn.execute(
            "SELECT datatype, SUM(accepted), SUM(rejected), SUM(duplicates),"
            " SUM(CASE WHEN day = ? THEN accepted ELSE 0 END)"
            " FROM daily_counts GROUP BY datatype",
            (day,),
        ) as cur:
            rows = await cur.fetchall()
        return {r[0]: TypeCounts(r[1], r[2], r[3], r[4]) for r in rows}

    async def log_phase(
        self,
        run_id: int,
        phase: str,
        kind: str,
        *,
        model: str | None,
        load_s: float | None,
        gpu_share: float | None,
    ) -> int:
        """Record a phase entered, with its model load time and the GPU share after loading."""
        cur = await self._execute(
            "INSERT INTO phase_log (run_id, phase, kind, started_at, model, load_s, gpu_share)"
            " VALUES (?,?,?,?,?,?,?)",
            (run_id, phase, kind, self._stamp(), model, load_s, gpu_share),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def close_phase(self, phase_id: int, note: str | None = None) -> None:
        await self._execute(
            "UPDATE phase_log SET ended_at = ?, note = COALESCE(?, note) WHERE id = ?",
            (self._stamp(), note, phase_id),
        )

    # -- helpers -----------------------------------------------------------------------------

    def _stamp(self) -> str:
        return iso(self._now())

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> aiosqlite.Cursor:
        async with self._lock:
            try:
                cur = await self._conn.execute(sql, params)
                await cur.close()
                return cur
            except sqlite3.Error as exc:
                raise store_error(exc, self.path, "a write failed") from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One transaction under the store's lock. Any failure, the COMMIT's included, rolls
        it back (so the connection is clean for a retry) and becomes a StoreError, or a
        StoreUnavailable when the disk refuses writes."""
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise store_error(exc, self.path, "cannot begin a transaction") from exc
            try:
                yield
                with anyio.CancelScope(shield=True):
                    await self._conn.execute("COMMIT")
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise store_error(exc, self.path, "a transaction failed") from exc
                raise

    async def _rollback(self) -> None:
        if self._conn.in_transaction:
            # SQLite may have rolled back by itself (it does on SQLITE_FULL and I/O errors).
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("ROLLBACK")


# SQLite's error names (Python 3.11 sqlite3 exceptions carry them) for a disk that refuses
# writes now but may accept them later: full, read-only, not permitted, failing I/O.
_UNAVAILABLE: tuple[tuple[str, str], ...] = (
    ("SQLITE_FULL", "full"),
    ("SQLITE_READONLY", "readonly"),
    ("SQLITE_CANTOPEN", "permission"),
    ("SQLITE_PERM", "permission"),
    ("SQLITE_AUTH", "permission"),
    ("SQLITE_IOERR", "io"),
)
_FIXES = {
    "full": "free space on that filesystem (or move [service].db to a bigger one)",
    "readonly": "make the filesystem or the file writable again (remount read-write, fix the "
    "file's mode)",
    "permission": "give the service's user write access to the file and its folder",
    "io": "check the disk (dmesg, SMART); a failing disk loses data",
}


def free_bytes(path: Path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (None when it cannot be read)."""
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return None


def store_error(exc: sqlite3.Error, path: Path, doing: str) -> StoreError:
    """Our error for a SQLite failure: StoreUnavailable (with the fix) when the disk refuses
    writes, StoreError otherwise."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    reason = next((r for prefix, r in _UNAVAILABLE if name.startswith(prefix)), None)
    if reason is None and "disk is full" in text:
        reason = "full"
    if reason is None and "readonly" in text:
        reason = "readonly"
    if reason is None:
        return StoreError(f"database {path}: {doing}: {exc}")
    free = free_bytes(path)
    space = f"; {free:,} bytes free there" if free is not None else ""
    return StoreUnavailable(
        f"database {path}: {doing}: {exc}{space}. Fix: {_FIXES[reason]}; the service holds "
        "what it has not committed and goes on when writes succeed again",
        reason=reason,
    )


def _checkpoint_truncate(conn: sqlite3.Connection) -> None:
    """A TRUNCATE checkpoint that gives up at once (busy_timeout 0) when a reader holds part
    of the log, so the writer's thread is never held by someone else's read transaction."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


async def _prepare(conn: aiosqlite.Connection, path: Path) -> None:
    try:
        mode = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreError(f"database {path}: cannot switch to WAL mode (got {mode!r})")
        await conn.execute("PRAGMA synchronous = FULL")
        # A reader that holds a read transaction (a long `sqlite3` session, a backup) keeps
        # checkpoints from reaching the end of the WAL, which then grows with every commit.
        # SQLite reuses the file from its start once a checkpoint completes, but never makes
        # it smaller; with a size limit the file is cut back to it at that restart.
        await conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        await conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        row = await (await conn.execute("PRAGMA user_version")).fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"database {path} has schema version {version}, newer than this gen-service "
                f"understands ({SCHEMA_VERSION}). Fix: upgrade gen-service, or use another db."
            )
        for target in range(version, SCHEMA_VERSION):
            await conn.executescript(
                "BEGIN IMMEDIATE;\n"
                + MIGRATIONS[target]
                + f"\nPRAGMA user_version = {target + 1};\nCOMMIT;"
            )
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"cannot use the database {path}: {exc}. Fix: check it is a gen-service SQLite "
            "file (not another file type) and not corrupted; point [service].db elsewhere to "
            "start a new one."
        ) from None
