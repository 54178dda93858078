"""The SQLite store against real database files in tmp_path."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from pathlib import Path

import anyio
import pytest

from gen_service.adapters.store import SCHEMA_VERSION, Store, open_readonly, utc_offset_modifier
from gen_service.adapters.store.core import WAL_SIZE_LIMIT
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.errors import StoreError

pytestmark = pytest.mark.anyio


def batch(*rows: SampleRow, status: str = "ok", day: str = "2026-11-25") -> BatchRecord:
    return BatchRecord(
        datatype="personality_traits",
        model="qwen3:8b",
        phase="p",
        status=status,  # type: ignore[arg-type]
        attempts=1,
        requested=len(rows),
        temperature=0.9,
        num_predict=100,
        seed=1,
        created_at="2026-11-25T10:00:00.000+00:00",
        day=day,
        samples=rows,
    )


def row(h: str, status: str = "accepted") -> SampleRow:
    return SampleRow("personality_traits", status, '{"x": 1}', content_hash=h)  # type: ignore[arg-type]


async def test_batches_committed_together_are_decided_in_order_all_or_none(
    tmp_path: Path,
) -> None:
    """commit_batches decides each batch as if committed alone, in order (a later one's copy
    of an earlier one's sample is a duplicate); when one fails, none is stored."""
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        results = await store.commit_batches(
            None, [batch(row("a"), row("b")), batch(row("b"), row("c"))]
        )
        assert [(r.accepted, r.duplicates) for r in results] == [(2, 0), (1, 1)]
        assert results[1].batch_id == results[0].batch_id + 1
        broken = batch(row("z", "nonsense"))  # the status CHECK refuses it
        with pytest.raises(StoreError):
            await store.commit_batches(None, [batch(row("d")), broken])
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 2
    hashes = [h for (h,) in conn.execute("SELECT content_hash FROM samples ORDER BY id")]
    assert hashes == ["a", "b", "b", "c"]
    conn.close()


async def test_schema_is_created_in_wal_mode(tmp_path: Path) -> None:
    """A new database gets the current schema version, WAL mode and the documented views."""
    db = tmp_path / "s.db"
    async with Store.open(db):
        pass
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
    assert {"progress", "hourly_rate", "failures"} <= views
    conn.close()


async def test_exact_duplicates_become_duplicate_rows(tmp_path: Path) -> None:
    """A hash already accepted, or repeated within a batch, is stored as duplicate."""
    async with Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        first = await store.commit_batch(run.run_id, batch(row("a"), row("b"), row("a")))
        second = await store.commit_batch(
            run.run_id, batch(row("b"), row("c"), row("x", "rejected"))
        )
        counts = await store.type_counts("2026-11-25")
    assert (first.accepted, first.duplicates) == (2, 1)
    assert (second.accepted, second.duplicates, second.rejected) == (1, 1, 1)
    c = counts["personality_traits"]
    assert (c.accepted, c.duplicates, c.rejected, c.accepted_today) == (3, 2, 1, 3)


async def test_unique_index_refuses_two_accepted_with_one_hash(tmp_path: Path) -> None:
    """The database itself refuses a second accepted sample with the same hash."""
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        await store.commit_batch(run.run_id, batch(row("a")))
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO samples (batch_id, datatype, status, content_hash, payload, created_at,"
            " day) VALUES (1, 'personality_traits', 'accepted', 'a', '{}', 'now', 'd')"
        )
    conn.close()


async def test_progress_view_counts_and_targets(tmp_path: Path) -> None:
    """progress shows accepted, rejected, duplicates, today and the targets per type."""
    db = tmp_path / "s.db"
    today = dt.datetime.now(dt.UTC).date().isoformat()
    async with Store.open(db) as store:
        await store.set_targets([("personality_traits", "qwen3:8b", 10, 100)], dt.UTC)
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        await store.commit_batch(run.run_id, batch(row("a"), row("b"), day=today))
        await store.commit_batch(run.run_id, batch(row("c"), day="2020-01-01"))
        await store.commit_batch(run.run_id, batch(status="failed", day=today))
    conn = open_readonly(db)
    r = conn.execute("SELECT * FROM progress").fetchone()
    assert dict(r) == {
        "datatype": "personality_traits",
        "accepted": 3,
        "rejected": 0,
        "duplicates": 0,
        "today": 2,
        "daily_target": 10,
        "total_target": 100,
        "pct_of_total": 3.0,
        "flagged": 0,
    }
    failures = conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
    assert failures == 1
    conn.close()


async def test_counts_follow_manual_status_changes(tmp_path: Path) -> None:
    """Triggers keep daily_counts right when a reviewer changes a status by hand."""
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        await store.commit_batch(run.run_id, batch(row("a"), row("b")))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE samples SET status = 'rejected' WHERE content_hash = 'a'")
    conn.execute("DELETE FROM samples WHERE content_hash = 'b'")
    conn.commit()
    conn.close()
    async with Store.open(db) as store:
        c = (await store.type_counts("2026-11-25"))["personality_traits"]
    assert (c.accepted, c.rejected) == (0, 1)


async def test_crashed_run_is_marked_on_next_start(tmp_path: Path) -> None:
    """A run left 'running' (killed) is marked crashed by the next start."""
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        await store.start_run(version="t", config_path="c", mode="sequential")
    async with Store.open(db) as store:
        await store.start_run(version="t", config_path="c", mode="sequential")
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY id")] == [
        "crashed",
        "running",
    ]
    conn.close()


async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """Pointing the store at a file that is not SQLite gives a clear StoreError."""
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello " * 1000)
    with pytest.raises(StoreError, match="not corrupted"):
        async with Store.open(bogus):
            pass


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer gen-service is not touched."""
    db = tmp_path / "s.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        async with Store.open(db):
            pass


def test_utc_offset_modifier() -> None:
    """The stored modifier turns UTC into the zone's wall clock."""
    import zoneinfo

    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    winter = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
    summer = dt.datetime(2026, 7, 15, 12, tzinfo=dt.UTC)
    assert utc_offset_modifier(berlin, winter) == "+60 minutes"
    assert utc_offset_modifier(berlin, summer) == "+120 minutes"
    assert utc_offset_modifier(dt.UTC, winter) == "+0 minutes"


async def test_accepted_per_quota_counts_only_accepted_samples_of_the_type(tmp_path: Path) -> None:
    """Accepted samples per quota key for one type: rejected, duplicate, keyless and other
    types' samples are left out."""

    def keyed(h: str, key: str | None, status: str = "accepted") -> SampleRow:
        return SampleRow("personality_traits", status, "{}", content_hash=h, quota_key=key)  # type: ignore[arg-type]

    other = SampleRow("tension_building", "accepted", "{}", content_hash="t", quota_key="openness")
    async with Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        rows = (
            keyed("a", "openness"),
            keyed("b", "openness"),
            keyed("c", "neuroticism"),
            keyed("a", "neuroticism"),  # a duplicate of "a": does not count
            keyed("d", "openness", "rejected"),
            keyed("e", None),
        )
        await store.commit_batch(run.run_id, batch(*rows))
        await store.commit_batch(run.run_id, batch(other))
        counts = await store.accepted_per_quota("personality_traits")
        assert counts == {"openness": 2, "neuroticism": 1}
        assert await store.accepted_per_quota("dramatic_irony") == {}


async def test_the_wal_shrinks_back_after_a_long_reader_lets_go(tmp_path: Path) -> None:
    """A reader holding a read transaction lets the WAL grow past its limit; once it lets go
    and a checkpoint completes, the next commits cut the file back to the limit."""
    db = tmp_path / "s.db"
    wal = tmp_path / "s.db-wal"
    payload = "x" * 4000
    big = [
        SampleRow("personality_traits", "accepted", f'"{payload}"', content_hash=f"{i}")
        for i in range(200)
    ]

    async with Store.open(db) as store:
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM samples").fetchone()  # holds its snapshot
        serial = 0
        while wal.stat().st_size <= WAL_SIZE_LIMIT + 2**20:
            rows = [
                SampleRow(r.datatype, r.status, r.payload_json, content_hash=f"{serial}-{i}")
                for i, r in enumerate(big)
            ]
            await store.commit_batch(run.run_id, batch(*rows))
            serial += 1
        grown = wal.stat().st_size
        reader.execute("COMMIT")
        reader.close()
        for i in range(40):  # past the next automatic checkpoint, into the restarted WAL
            await store.commit_batch(run.run_id, batch(row(f"after-{i}")))
        after = wal.stat().st_size  # while the store is open (closing deletes the WAL)
    assert grown > WAL_SIZE_LIMIT
    assert after <= WAL_SIZE_LIMIT


async def test_an_idle_store_cuts_the_wal_back_once_the_reader_lets_go(tmp_path: Path) -> None:
    """With no commit after a long reader lets go, SQLite keeps the grown WAL; trim_wal (the
    writer's idle tick) cuts it back. While the reader still holds it, trim_wal does nothing
    and does not wait for it."""
    db = tmp_path / "s.db"
    wal = tmp_path / "s.db-wal"
    payload = "y" * 4000
    async with Store.open(db) as store:
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        assert await store.trim_wal() is None  # small: nothing to do
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM samples").fetchone()
        serial = 0
        while wal.stat().st_size <= WAL_SIZE_LIMIT + 2**20:
            rows = [
                SampleRow(
                    "personality_traits", "accepted", f'"{payload}"', content_hash=f"{serial}-{i}"
                )
                for i in range(200)
            ]
            await store.commit_batch(run.run_id, batch(*rows))
            serial += 1
        grown = wal.stat().st_size
        with anyio.fail_after(5):  # busy_timeout is 10 s: it must not wait on the reader
            assert await store.trim_wal() is None
        assert wal.stat().st_size >= grown
        reader.execute("COMMIT")
        reader.close()
        freed = await store.trim_wal()
        after = wal.stat().st_size
    assert freed is not None and freed >= grown - WAL_SIZE_LIMIT
    assert after <= WAL_SIZE_LIMIT
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 200 * serial
    conn.close()


def test_a_store_cancelled_from_outside_closes_before_the_loop_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while open (a caller cancels the whole service), the store still waits for
    its connection to close: a close cut short leaves the connection's thread finishing after
    the event loop is gone, and it dies with "Event loop is closed"."""
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))

    async def main() -> None:
        with anyio.CancelScope() as scope:
            async with Store.open(tmp_path / "c.db"):
                scope.cancel()
                await anyio.sleep(5)  # cancelled here

    for _ in range(5):
        anyio.run(main)
    time.sleep(0.5)  # let any thread left behind finish
    assert failures == []
