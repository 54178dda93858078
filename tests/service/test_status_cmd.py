"""`gen-service status`: light on imports (SPEC §9.5), and `--watch` refreshes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio

from gen_service.adapters.store import Store

from ..conftest import REPO

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
    """`status --json`, by --db and by --config, imports none of the heavy packages."""
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
    for where in (["--db", str(db)], ["--config", str(config)]):
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
        assert json.loads(heavy) == [], f"status {where[0]} imported {heavy}"
