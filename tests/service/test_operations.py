"""24/7 operation: clock phases, model swaps, SIGHUP reload, SIGTERM drain, backend outages."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.config import load_config
from gen_service.service import runner
from gen_service.service.clock import ScaledClock
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama

from ..conftest import ALL_TYPES

pytestmark = pytest.mark.anyio


def _clock_config(base: str, start: dt.datetime, minutes: int) -> str:
    """Turn a generated sequential config into a clock one: three phases of `minutes` each
    from `start`, volume -> quality -> volume, so the volume model must be swapped back."""
    head = base[: base.index("[schedule]")]
    t0 = start.hour * 60 + start.minute

    def hhmm(m: int) -> str:
        return f"{m // 60:02d}:{m % 60:02d}"

    phases = [
        ("traits", "personality_traits"),
        ("feelings", "emotional_authenticity"),
        ("scores", "relationship_scoring"),
    ]
    text = (
        head
        + "\n[gpu]\nvram_gb = 12\nreserve_gb = 0.5\n"
        + '\n[schedule]\nmode = "clock"\nbackfill = false\n'
    )
    for i, (name, datatype) in enumerate(phases):
        text += (
            f'\n[[schedule.phases]]\nname = "{name}"\nkind = "generate"\n'
            f'datatypes = ["{datatype}"]\nstart = "{hhmm(t0 + i * minutes)}"\n'
            f'end = "{hhmm(t0 + (i + 1) * minutes)}"\n'
        )
    return text


async def test_clock_mode_follows_phases_with_one_load_per_change(
    write_config: Callable[..., Path],
) -> None:
    """Short clock phases run in order; each model change is one load; VRAM stays in budget."""
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    # 60x: a schedule minute passes in one real second.
    clock = ScaledClock(start, speed=60.0)
    fake = FakeConfig(vram_bytes=12 * 2**30, seed=2)
    types = ("personality_traits", "emotional_authenticity", "relationship_scoring")
    with FakeOllama(fake) as server:
        base = write_config(url=server.url, target=15, types=types).read_text()
        cfg = load_config(write_config(_clock_config(base, start, minutes=2), name="clock.toml"))
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(run_service, cfg, clock=clock))
                await anyio.sleep(clock.seconds_until(start + dt.timedelta(minutes=6, seconds=20)))
                tg.cancel_scope.cancel()
        stats = server.stats()
    slots = [e["phase"] for e in logs if e["event"] == "phase.slot"]
    assert slots[:3] == ["traits", "feelings", "scores"]
    assert stats.loads == {"qwen3:8b": 2, "qwen3:30b-a3b": 1}
    assert stats.peak_vram_bytes <= fake.vram_bytes
    conn = sqlite3.connect(cfg.service.db)
    progress = dict(conn.execute("SELECT datatype, today FROM progress").fetchall())
    phase_log = conn.execute("SELECT phase, model, load_s FROM phase_log ORDER BY id").fetchall()
    conn.close()
    assert all(progress[t] >= 15 for t in types)
    assert [p for p, _, _ in phase_log][:3] == ["traits", "feelings", "scores"]
    assert phase_log[1][1] == "qwen3:30b-a3b" and phase_log[1][2] is not None
    partial = [e for e in logs if e["event"] == "model.loaded" and e["model"] == "qwen3:30b-a3b"]
    assert partial and partial[0]["gpu_share"] < 1.0  # 30b-a3b spills to the CPU in 12 GB


async def test_vanished_model_is_reloaded(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model evicted mid-phase (runner crash) is noticed, reloaded and logged."""
    monkeypatch.setattr(runner, "RESIDENCY_CHECK_S", 0.05)
    fake = FakeConfig(seed=4, time_scale=1.0, tokens_per_s=2_000, load_s=0)
    with FakeOllama(fake) as server:
        base = write_config(
            url=server.url, target=100_000, daily=0, types=("personality_traits",), num_parallel=1
        ).read_text()
        text = base[: base.index("[schedule]")] + (
            '[schedule]\nmode = "clock"\n\n[[schedule.phases]]\nname = "all-day"\n'
            'kind = "generate"\ndatatypes = ["personality_traits"]\nstart = "00:00"\n'
            'end = "24:00"\n'
        )
        cfg = load_config(write_config(text, name="allday.toml"))
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_service, cfg)
                assert await _until(lambda: server.stats().chat_requests >= 2)
                server.evict("qwen3:8b")
                assert await _until(lambda: any(e["event"] == "model.reloaded" for e in logs))
                tg.cancel_scope.cancel()
    events = [e["event"] for e in logs]
    assert events.index("model.vanished") < events.index("model.reloaded")


async def _until(predicate: Callable[[], bool], limit_s: float = 20.0) -> bool:
    """Poll a condition that another thread (the fake's) changes; True once it holds."""
    deadline = anyio.current_time() + limit_s
    while anyio.current_time() < deadline:
        if predicate():
            return True
        await anyio.sleep(0.02)
    return predicate()


async def test_backend_outage_pauses_and_resumes(write_config: Callable[..., Path]) -> None:
    """When Ollama goes away mid-run, producers pause, one probe waits, and the run finishes."""
    with FakeOllama(FakeConfig(seed=6, time_scale=1.0, tokens_per_s=50_000, load_s=0)) as server:
        cfg = load_config(
            write_config(url=server.url, target=60, types=ALL_TYPES[:1], max_retries=2)
        )
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(run_service, cfg, until_done=True))
                assert await _until(lambda: server.stats().chat_requests >= 2)
                server.go_down()
                await anyio.sleep(1.0)
                server.come_up()
    events = [e["event"] for e in logs]
    assert "backend.down" in events and "backend.recovered" in events
    conn = sqlite3.connect(cfg.service.db)
    accepted = conn.execute("SELECT accepted FROM progress").fetchone()[0]
    conn.close()
    assert accepted >= 60


# -- signals, in a real process ---------------------------------------------------------------


def _spawn(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gen_service", "run", "--config", str(config), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _accepted(db: Path) -> int:
    try:
        conn = sqlite3.connect(db, timeout=5)
        try:
            return int(
                conn.execute("SELECT COALESCE(SUM(accepted), 0) FROM progress").fetchone()[0]
            )
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def _events(stderr: str) -> list[dict[str, object]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def test_sighup_applies_new_targets_and_refuses_broken_files(
    write_config: Callable[..., Path],
) -> None:
    """SIGHUP with a lower target ends the run there; a broken file is refused, old kept."""
    fake = FakeConfig(time_scale=1.0, tokens_per_s=5_000, load_s=0, seed=8)
    with FakeOllama(fake) as server:
        config = write_config(
            url=server.url, target=100_000, daily=0, types=ALL_TYPES[2:3], num_parallel=2
        )
        good = config.read_text()
        db = config.parent / "samples.db"
        proc = _spawn(config, "--until-done")
        try:
            assert _wait_for(lambda: _accepted(db) >= 10)
            config.write_text(good.replace("batch_size = 5", 'batch_size = "oops"'))
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            assert proc.poll() is None  # still running on the old config
            target = _accepted(db) + 20
            config.write_text(good.replace("total_target = 100000", f"total_target = {target}"))
            proc.send_signal(signal.SIGHUP)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    events = _events(err)
    failed = [e for e in events if e["event"] == "config.reload_failed"]
    reloaded = [e for e in events if e["event"] == "config.reloaded"]
    assert failed and "batch_size" in str(failed[0]["error"])
    assert reloaded and any("total_target" in c for c in reloaded[0]["changes"])  # type: ignore[attr-defined]
    assert target <= _accepted(db) < target + 10


def test_sigterm_drains_and_exits_zero(write_config: Callable[..., Path]) -> None:
    """SIGTERM stops new requests, commits finished batches and exits 0 within the grace."""
    fake = FakeConfig(time_scale=1.0, tokens_per_s=3_000, load_s=0, seed=10)
    with FakeOllama(fake) as server:
        config = write_config(
            url=server.url, target=100_000, daily=0, types=ALL_TYPES[:1], grace_s=20
        )
        db = config.parent / "samples.db"
        proc = _spawn(config)
        try:
            assert _wait_for(lambda: _accepted(db) >= 5)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        stats = server.stats()
        # /api/chat calls that generated something: all chats less the scheduler's load.
        requests = stats.chat_requests - sum(stats.loads.values())
    assert proc.returncode == 0, err[-2000:]
    assert took < 20
    events = [e["event"] for e in _events(err)]
    assert "service.draining" in events and "service.stopped" in events
    conn = sqlite3.connect(db)
    batches = conn.execute("SELECT SUM(attempts) FROM batches").fetchone()[0]
    status = conn.execute("SELECT status FROM runs ORDER BY id DESC").fetchone()[0]
    conn.close()
    assert status == "stopped"
    assert batches == requests  # every request that was answered was committed


def test_second_signal_cancels_at_once(write_config: Callable[..., Path]) -> None:
    """A second SIGINT during the drain cancels at once (exit 0, run marked stopped)."""
    fake = FakeConfig(time_scale=1.0, tokens_per_s=200, load_s=0, seed=11)
    with FakeOllama(fake) as server:
        config = write_config(
            url=server.url, target=100_000, daily=0, types=ALL_TYPES[:1], grace_s=60
        )
        db = config.parent / "samples.db"
        proc = _spawn(config)
        try:
            assert _wait_for(
                lambda: db.exists() and _accepted(db) >= 0 and server.stats().chat_requests >= 2
            )
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "service.cancelling" in err


def test_service_sends_ready_and_watchdog_to_notify_socket(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Under systemd the running service reports READY=1, pings WATCHDOG=1 and says STOPPING."""
    import socket

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    fake = FakeConfig(time_scale=1.0, tokens_per_s=2_000, load_s=0, seed=12)
    messages: list[str] = []
    try:
        with FakeOllama(fake) as server:
            config = write_config(url=server.url, target=100_000, daily=0, types=ALL_TYPES[:1])
            env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"}
            proc = subprocess.Popen(
                [sys.executable, "-m", "gen_service", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        messages.append(sock.recv(4096).decode())
                    if sum("WATCHDOG=1" in m for m in messages) >= 3 and any(
                        "READY=1" in m for m in messages
                    ):
                        break
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=30)
                while True:
                    try:
                        messages.append(sock.recv(4096).decode())
                    except TimeoutError:
                        break
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    finally:
        sock.close()
    assert proc.returncode == 0, err[-2000:]
    assert any(m.startswith("READY=1") for m in messages)
    assert sum("WATCHDOG=1" in m for m in messages) >= 3
    assert any("STOPPING=1" in m for m in messages)


def test_status_while_running(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """status --json answers while the service writes, naming the phase and resident model."""
    from gen_service.cli import main

    fake = FakeConfig(time_scale=1.0, tokens_per_s=3_000, load_s=0, seed=13)
    with FakeOllama(fake) as server:
        config = write_config(url=server.url, target=100_000, daily=0, types=ALL_TYPES[:1])
        db = config.parent / "samples.db"
        proc = _spawn(config)
        try:
            assert _wait_for(lambda: _accepted(db) >= 3)
            assert main(["status", "--config", str(config), "--json"]) == 0
            data = json.loads(capsys.readouterr().out)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    assert data["service_running"] is True
    assert data["current_phase"] == ALL_TYPES[0]
    assert data["current_model"] == "qwen3:30b-a3b"
    assert data["datatypes"][ALL_TYPES[0]]["accepted"] >= 3
    assert data["samples_per_hour"] > 0
