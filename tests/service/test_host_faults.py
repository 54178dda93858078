"""The host's faults: a database whose disk fills up pauses the service instead of crashing
it, and whatever ends a run is reported as one event with its exit code."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.adapters.state_file import SIZE, StateFile, read_state, state_path
from gen_service.adapters.store import Store
from gen_service.adapters.store import core as store_core
from gen_service.cli import main
from gen_service.config import load_config
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.errors import StoreUnavailable
from gen_service.service.status import dashboard
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeOllama

from ..conftest import ALL_TYPES

pytestmark = pytest.mark.anyio


def batch(n: int, tag: str) -> BatchRecord:
    rows = tuple(
        SampleRow("personality_traits", "accepted", json.dumps({"t": tag, "pad": "x" * 2000}),
                  content_hash=f"{tag}-{i}")
        for i in range(n)
    )  # fmt: skip
    return BatchRecord(
        datatype="personality_traits", model="m", phase="p", status="ok", attempts=1,
        requested=n, temperature=0.8, num_predict=100, seed=1,
        created_at="2026-11-25T10:00:00.000+00:00", day="2026-11-25", samples=rows,
    )  # fmt: skip


async def page_count(conn: aiosqlite.Connection) -> int:
    row = await (await conn.execute("PRAGMA page_count")).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_full_disk_is_store_unavailable_and_leaves_the_connection_clean(
    tmp_path: Path,
) -> None:
    """SQLITE_FULL (provoked with PRAGMA max_page_count) becomes StoreUnavailable naming the
    path, the free bytes and the fix; once there is room, the same batch commits."""
    db = tmp_path / "full.db"
    async with Store.open(db) as store:
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        await store.commit_batch(run.run_id, batch(2, "a"))
        conn = store._conn
        await conn.execute(f"PRAGMA max_page_count = {await page_count(conn)}")
        with pytest.raises(StoreUnavailable) as caught:
            await store.commit_batch(run.run_id, batch(20, "b"))
        assert caught.value.reason == "full"
        message = str(caught.value)
        assert str(db) in message and "bytes free" in message and "Fix: free space" in message
        await conn.execute("PRAGMA max_page_count = 1000000")
        result = await store.commit_batch(run.run_id, batch(20, "b"))
        assert result.accepted == 20
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 22
    check.close()


@pytest.fixture
def service_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[aiosqlite.Connection]]:
    """The aiosqlite connections the service opens, so a test can fill its disk."""
    opened: list[aiosqlite.Connection] = []
    prepare = store_core._prepare

    async def recording(conn: aiosqlite.Connection, path: Path) -> None:
        await prepare(conn, path)
        opened.append(conn)

    monkeypatch.setattr(store_core, "_prepare", recording)
    yield opened


async def until(predicate: Callable[[], bool], limit_s: float = 20.0) -> None:
    """Poll a condition that the service (in this loop) and SQLite change."""
    with anyio.fail_after(limit_s):
        while not predicate():  # noqa: ASYNC110 - polling state outside this test's control
            await anyio.sleep(0.02)


async def test_a_full_disk_pauses_the_run_and_it_goes_on_when_space_returns(
    fake_ollama: FakeOllama,
    write_config: Callable[..., Path],
    service_connections: list[aiosqlite.Connection],
) -> None:
    """With the database full the writer holds its batch, producers pause at the gate, the
    service says so (store.unavailable, the state file, status --json); when writes succeed
    again it commits what it held and the run reaches its targets, nothing lost."""
    cfg = load_config(write_config(url=fake_ollama.url, target=400, types=ALL_TYPES[2:3]))
    db = cfg.service.db
    outcome: list[Any] = []

    def committed() -> int:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0])

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                outcome.append(await run_service(cfg, until_done=True))

            tg.start_soon(run)
            await until(lambda: bool(service_connections) and db.exists() and committed() >= 2)
            conn = service_connections[0]
            await conn.execute(f"PRAGMA max_page_count = {await page_count(conn)}")
            await until(lambda: any(e["event"] == "store.unavailable" for e in logs))
            held_at = committed()
            state = read_state(db)
            assert state is not None and state["paused"]["state"] == "paused"
            assert "refuses writes (full)" in state["paused"]["why"]
            ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            ro.row_factory = sqlite3.Row
            status = dashboard(ro, cfg, now=__import__("datetime").datetime.now(
                __import__("datetime").UTC), gpu_probe=False)  # fmt: skip
            ro.close()
            assert status["paused"] and "full" in status["paused"]["why"]
            await anyio.sleep(0.5)
            assert committed() == held_at, "nothing commits while the disk is full"
            await conn.execute("PRAGMA max_page_count = 10000000")
    assert outcome and outcome[0].reason == "done"
    events = [e["event"] for e in logs]
    assert "store.recovered" in events
    unavailable = next(e for e in logs if e["event"] == "store.unavailable")
    assert unavailable["reason"] == "full" and unavailable["free_bytes"] is not None
    assert unavailable["held_writes"] >= 1
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    accepted = check.execute("SELECT accepted FROM progress").fetchone()[0]
    check.close()
    assert accepted >= 400
    final = read_state(db)
    assert final is not None and final.get("stopped") is True and final["paused"] is None


def test_exit_policy_ends_the_run_with_74_and_one_event(
    fake_ollama: FakeOllama,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    service_connections: list[aiosqlite.Connection],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """store_unavailable = "exit": the first refused commit ends the run with exit 74, one
    service.failed event and no traceback."""
    text = write_config(url=fake_ollama.url, target=80, types=ALL_TYPES[2:3]).read_text()
    path = write_config(
        text.replace("[service]\n", '[service]\nstore_unavailable = "exit"\n'), name="x.toml"
    )
    original = store_core.Store.commit_batches
    calls = {"n": 0}

    async def filling(self: Store, run_id: int | None, b: Sequence[BatchRecord]) -> Any:
        calls["n"] += 1
        # The disk fills up under the writer's second commit (batches that wait together
        # share one, so a run of 16 batches may take as few as two).
        if calls["n"] == 2:
            await self._conn.execute(f"PRAGMA max_page_count = {await page_count(self._conn)}")
        return await original(self, run_id, b)

    monkeypatch.setattr(store_core.Store, "commit_batches", filling)
    assert main(["run", "--config", str(path), "--until-done"]) == 74
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    failed = [e for e in lines if e["event"] == "service.failed"]
    assert len(failed) == 1 and failed[0]["exit_code"] == 74
    assert "database or disk is full" in failed[0]["error"]
    assert "Traceback" not in err and "BrokenResourceError" not in err


def test_an_unknown_error_is_one_event_with_its_traceback_once(
    fake_ollama: FakeOllama,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the writer ends the run with exit 1 and ONE service.crashed event carrying the
    traceback; the producers' follow-on BrokenResourceErrors are not printed."""
    path = write_config(url=fake_ollama.url, target=40, types=ALL_TYPES[2:3])

    async def broken(self: Store, run_id: int | None, b: Sequence[BatchRecord]) -> Any:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(store_core.Store, "commit_batches", broken)
    assert main(["run", "--config", str(path), "--until-done"]) == 1
    err = capsys.readouterr().err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    crashed = [e for e in events if e["event"] == "service.crashed"]
    assert len(crashed) == 1
    assert "RuntimeError: a bug in the writer" in crashed[0]["error"]
    assert crashed[0]["exception"].count("Traceback") == 1
    assert "BrokenResourceError" not in err
    assert "ExceptionGroup" not in err


def test_state_file_is_rewritten_in_place_at_a_fixed_size(tmp_path: Path) -> None:
    """The state file never grows or moves: each write replaces the same SIZE bytes, so it can
    be written on a full disk; a reader gets the last state or None, never garbage."""
    db = tmp_path / "s.db"
    state = StateFile(db)
    state.open()
    inode = state_path(db).stat().st_ino
    assert state.write({"pid": 1, "phase": "a", "paused": None})
    assert state.write({"pid": 1, "phase": "b" * 10, "paused": {"why": "full"}})
    assert state_path(db).stat().st_size == SIZE and state_path(db).stat().st_ino == inode
    assert read_state(db) == {"pid": 1, "phase": "b" * 10, "paused": {"why": "full"}}
    assert state.write({"pid": 1, "phase": "c" * 9000, "paused": None})  # too big: trimmed
    trimmed = read_state(db)
    assert trimmed is not None and trimmed.get("truncated") is True
    state.close()
    state_path(db).write_text('{"pid": 1, "pha')
    assert read_state(db) is None
