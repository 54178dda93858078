"""`gen-service status`: light on imports (SPEC §9.5), and `--watch` refreshes."""

from __future__ import annotations

import functools
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from gen_service.adapters.store import Store
from gen_service.cli import main
from gen_service.config import load_config
from gen_service.errors import EXIT_USAGE
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeOllama

from ..conftest import ALL_TYPES, REPO

# What `status --json` must not import: each cost tens to hundreds of milliseconds (the
# writer's side of the store pulls in datasketch and SciPy), and the whole process has 200 ms.
HEAVY = ("pydantic", "aiosqlite", "datasketch", "scipy", "numpy", "rich", "structlog", "anyio")


def _empty_db(path: Path) -> Path:
    async def create() -> None:
        async with Store.open(path):
            pass

    anyio.run(create)
    return path


def test_status_json_imports_nothing_heavy(tmp_path: Path) -> None:
    """`status --json`, by --db, by --config and with --watch, imports none of the heavy
    packages."""
    db = _empty_db(tmp_path / "samples.db")
    config = tmp_path / "gen-service.toml"
    config.write_text('[service]\ndb = "samples.db"\n\n[datatypes.personality_traits]\n')
    probe = (
        "import json, sys\n"
        "from gen_service.cli import main\n"
        "code = main(sys.argv[1:])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps(heavy))\n"
        "sys.exit(code)\n"
    )
    watching = ["--db", str(db), "--watch", "--count", "1"]
    for where in (["--db", str(db)], ["--config", str(config)], watching):
        result = subprocess.run(
            [sys.executable, "-c", probe, "status", *where, "--json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        *status, heavy = result.stdout.strip().splitlines()
        assert json.loads("\n".join(status))["database"] == str(db)
        assert json.loads(heavy) == [], f"status {' '.join(where)} imported {heavy}"


# -- --watch ----------------------------------------------------------------------------------


@pytest.fixture
def generated_db(fake_ollama: FakeOllama, write_config: Callable[..., Path]) -> Path:
    """A real database: a short run of two data types against the fake Ollama."""
    cfg = load_config(write_config(url=fake_ollama.url, target=10, types=ALL_TYPES[:2]))
    anyio.run(functools.partial(run_service, cfg, until_done=True))
    return cfg.service.db


def accepted_in(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT SUM(accepted) FROM progress").fetchone()[0])


def add_accepted_sample(db: Path) -> None:
    """One more accepted sample, written the way an operator's sqlite3 session would."""
    conn = sqlite3.connect(db)
    try:
        batch_id, datatype, day, created = conn.execute(
            "SELECT id, datatype, day, created_at FROM batches ORDER BY id LIMIT 1"
        ).fetchone()
        conn.execute(
            "INSERT INTO samples (batch_id, datatype, status, content_hash, payload,"
            " created_at, day) VALUES (?, ?, 'accepted', 'watch-test', '{}', ?, ?)",
            (batch_id, datatype, created, day),
        )
        conn.commit()
    finally:
        conn.close()


def watch(db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gen_service", "status", "--db", str(db), "--watch", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_watch_json_prints_one_object_per_refresh(generated_db: Path) -> None:
    """`status --watch --count 2 --json` prints two JSON lines, each read afresh from the
    database: a sample added between them shows in the second, and it exits 0."""
    before = accepted_in(generated_db)
    with watch(generated_db, "--json", "--count", "2", "--interval", "2") as proc:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        add_accepted_sample(generated_db)  # well inside the 2 s before the second refresh
        second = json.loads(proc.stdout.readline())
        assert proc.stdout.read() == ""
        assert proc.wait(timeout=30) == 0
    assert first["samples_generated"] == before
    assert second["samples_generated"] == before + 1
    assert list(second["datatypes"]) == sorted(ALL_TYPES[:2])


def test_watch_table_prints_a_table_per_refresh_when_piped(
    generated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Piped, `status --watch --count 2` prints the table twice, with when it was read."""
    assert main(["status", "--db", str(generated_db), "--watch", "--count", "2",
                 "--interval", "0.01"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert out.count(f"gen-service — {generated_db}") == 2
    assert out.count("every 0.01 s; Ctrl-C stops") == 2
    assert out.count(f"{accepted_in(generated_db):,} accepted") == 2


def test_ctrl_c_stops_watch_with_exit_0(generated_db: Path) -> None:
    """Ctrl-C (SIGINT) ends `status --watch` quietly with exit 0."""
    with watch(generated_db, "--json") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()


@pytest.mark.parametrize(
    "args",
    [["--count", "2"], ["--interval", "5"], ["--watch", "--interval", "0"],
     ["--watch", "--count", "0"]],
)  # fmt: skip
def test_watch_options_are_checked(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--count and --interval need --watch and positive values: exit 64 with the reason."""
    assert main(["status", "--db", str(_empty_db(tmp_path / "s.db")), *args]) == EXIT_USAGE
    assert "error" in capsys.readouterr().err
