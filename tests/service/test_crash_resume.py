"""kill -9 mid-run, then run again: nothing committed is lost and the targets are reached."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gen_service.testing.fake_ollama import FakeConfig, FakeOllama

from ..conftest import ALL_TYPES


def accepted_ids(db: Path) -> set[int]:
    if not db.exists():
        return set()
    conn = sqlite3.connect(db, timeout=10)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM samples WHERE status = 'accepted'")}
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()


def start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gen_service", "run", "--config", str(config), "--until-done"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_then_restart_loses_nothing(write_config: Callable[..., Path]) -> None:
    """Samples committed before SIGKILL are all still there after the rerun reaches targets."""
    # A token rate slow enough that the kill lands mid-run (each request takes ~50 ms).
    fake = FakeConfig(time_scale=1.0, tokens_per_s=20_000, load_s=0.0, seed=9)
    with FakeOllama(fake) as server:
        config = write_config(url=server.url, target=40, types=ALL_TYPES[:3], num_parallel=2)
        db = config.parent / "samples.db"
        proc = start(config)
        deadline = time.monotonic() + 60
        before: set[int] = set()
        while time.monotonic() < deadline and len(before) < 15:
            time.sleep(0.1)
            before = accepted_ids(db)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        before = accepted_ids(db)  # everything committed up to the kill
        assert 0 < len(before) < 120
        rerun = start(config)
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()[-2000:]
    after = accepted_ids(db)
    assert before <= after
    conn = sqlite3.connect(db)
    rows = dict(conn.execute("SELECT datatype, accepted FROM progress").fetchall())
    runs = [r[0] for r in conn.execute("SELECT status FROM runs ORDER BY id")]
    conn.close()
    assert all(rows[t] >= 40 for t in ALL_TYPES[:3])
    assert runs == ["crashed", "finished"]
