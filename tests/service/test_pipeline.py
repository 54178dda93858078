"""The whole pipeline against the fake Ollama: render, request, parse, check, dedup, commit."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.cli import main
from gen_service.config import load_config
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama, FaultRates

from ..conftest import ALL_TYPES

pytestmark = pytest.mark.anyio


def progress(db: Path) -> dict[str, dict[str, int]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = {r["datatype"]: dict(r) for r in conn.execute("SELECT * FROM progress")}
    conn.close()
    return rows


def duplicate_hashes(db: Path) -> int:
    conn = sqlite3.connect(db)
    n = conn.execute(
        "SELECT COUNT(*) FROM (SELECT datatype, content_hash FROM samples WHERE status ="
        " 'accepted' GROUP BY datatype, content_hash HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    conn.close()
    return int(n)


async def test_until_done_reaches_every_target(
    fake_ollama: FakeOllama, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A sequential run ends with every type at its target and no duplicate accepted hash."""
    cfg = load_config(write_config(url=fake_ollama.url, target=30))
    with capture_logs() as logs:
        outcome = await run_service(cfg, until_done=True)
    assert outcome.reason == "done"
    rows = progress(cfg.service.db)
    assert set(rows) == set(ALL_TYPES)
    for name, row in rows.items():
        assert row["accepted"] >= 30, name
        assert row["accepted"] < 30 + 5, f"{name} overshot its target"
        assert row["today"] == row["accepted"]
    assert duplicate_hashes(cfg.service.db) == 0
    committed = [e for e in logs if e["event"] == "batch.committed"]
    assert committed and {
        "datatype",
        "model",
        "accepted",
        "duplicates",
        "attempts",
        "eval_tokens",
        "latency_s",
    } <= set(committed[0])


async def test_phases_run_in_listed_order(
    fake_ollama: FakeOllama, write_config: Callable[..., Path]
) -> None:
    """Sequential mode runs one phase after another, in the order of the config."""
    cfg = load_config(write_config(url=fake_ollama.url, target=10))
    with capture_logs() as logs:
        await run_service(cfg, until_done=True)
    started = [e["phase"] for e in logs if e["event"] == "phase.started"]
    assert started == list(ALL_TYPES)


async def test_daily_target_is_a_per_cycle_quota(
    fake_ollama: FakeOllama, write_config: Callable[..., Path]
) -> None:
    """With daily 10 and total 20, the schedule cycles twice through its phases."""
    cfg = load_config(write_config(url=fake_ollama.url, target=20, daily=10, types=ALL_TYPES[:2]))
    with capture_logs() as logs:
        await run_service(cfg, until_done=True)
    started = [e["phase"] for e in logs if e["event"] == "phase.started"]
    assert started == [ALL_TYPES[0], ALL_TYPES[1], ALL_TYPES[0], ALL_TYPES[1]]
    assert all(r["accepted"] >= 20 for r in progress(cfg.service.db).values())


async def test_faults_are_recorded_and_targets_still_met(
    write_config: Callable[..., Path],
) -> None:
    """With 5% of every fault injected, the run reaches its targets and records failures."""
    with FakeOllama(FakeConfig(faults=FaultRates.uniform(0.05), seed=3, stall_s=5)) as server:
        cfg = load_config(write_config(url=server.url, target=30, timeout_s=1.0, max_retries=4))
        outcome = await run_service(cfg, until_done=True)
        injected = server.stats().faults_injected
    assert outcome.reason == "done"
    assert sum(injected.values()) > 0
    conn = sqlite3.connect(cfg.service.db)
    errors = conn.execute("SELECT COUNT(*) FROM batches WHERE error IS NOT NULL").fetchone()[0]
    rejected = conn.execute("SELECT COUNT(*) FROM samples WHERE status != 'accepted'").fetchone()
    conn.close()
    assert errors > 0 and rejected[0] > 0
    assert all(r["accepted"] >= 30 for r in progress(cfg.service.db).values())
    assert duplicate_hashes(cfg.service.db) == 0


async def test_exact_duplicates_from_the_model_are_not_counted(
    write_config: Callable[..., Path],
) -> None:
    """A model that repeats itself produces duplicate rows, never extra accepted ones."""
    with FakeOllama(FakeConfig(faults=FaultRates(duplicate=0.5), seed=5)) as server:
        cfg = load_config(write_config(url=server.url, target=20, types=ALL_TYPES[2:3]))
        await run_service(cfg, until_done=True)
    row = progress(cfg.service.db)[ALL_TYPES[2]]
    assert row["duplicates"] > 0
    assert duplicate_hashes(cfg.service.db) == 0


async def test_failed_batches_are_recorded_with_their_errors(
    write_config: Callable[..., Path],
) -> None:
    """When every request fails, each batch is stored as failed with every attempt's error."""
    with FakeOllama(FakeConfig(faults=FaultRates(error_500=1.0))) as server:
        cfg = load_config(
            write_config(
                url=server.url, target=5, types=ALL_TYPES[:1], max_retries=1, num_parallel=1
            )
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_service, cfg)
            for _ in range(600):  # up to 30 s: the gate's probe backs off between outages
                await anyio.sleep(0.05)
                if cfg.service.db.exists():
                    conn = sqlite3.connect(cfg.service.db)
                    try:
                        n = conn.execute(
                            "SELECT COUNT(*) FROM batches WHERE status = 'failed'"
                        ).fetchone()[0]
                    except sqlite3.OperationalError:
                        n = 0
                    conn.close()
                    if n >= 2:
                        break
            tg.cancel_scope.cancel()
    conn = sqlite3.connect(cfg.service.db)
    rows = conn.execute("SELECT attempts, error FROM batches WHERE status = 'failed'").fetchall()
    conn.close()
    assert len(rows) >= 2
    assert all(a == 2 and e.count("attempt ") == 2 and "HTTP 500" in e for a, e in rows)


def test_status_json_reports_counts(
    fake_ollama: FakeOllama,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """status --json prints the dashboard keys and per-type counts after a run."""
    path = write_config(url=fake_ollama.url, target=10, types=ALL_TYPES[:2])
    assert main(["run", "--config", str(path), "--until-done"]) == 0
    capsys.readouterr()
    assert main(["status", "--config", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in (
        "samples_generated",
        "samples_per_hour",
        "current_model",
        "current_phase",
        "gpu_utilization",
        "vram_usage",
        "estimated_completion",
        "quality_score_avg",
        "batches_failed",
    ):
        assert key in data
    assert data["samples_generated"] >= 20
    assert data["estimated_completion"] == "done"
    row = data["datatypes"][ALL_TYPES[0]]
    assert row["accepted"] >= 10 and row["total_target"] == 10
    assert main(["status", "--config", str(path)]) == 0
    assert ALL_TYPES[0] in capsys.readouterr().out


def test_unreachable_backend_exits_69_before_generating(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A backend that is down is reported with the `ollama serve` hint, exit 69."""
    path = write_config(url="http://127.0.0.1:9", target=5)
    assert main(["run", "--config", str(path), "--until-done"]) == 69
    assert "ollama serve" in capsys.readouterr().err


def test_missing_model_exits_69_with_pull_hint(
    fake_ollama: FakeOllama,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model that is not pulled is caught at start with the `ollama pull` command."""
    path = write_config(url=fake_ollama.url, target=5, model_volume="qwen3:999b")
    assert main(["run", "--config", str(path), "--until-done"]) == 69
    assert "ollama pull qwen3:999b" in capsys.readouterr().err


async def test_every_sample_keeps_its_brief_and_its_prompt_version(
    fake_ollama: FakeOllama, write_config: Callable[..., Path]
) -> None:
    """SQL answers "which brief produced sample N": each row holds its brief, which its pinned
    fields follow, and its batch holds the template hash, the examples shown and the model."""
    cfg = load_config(write_config(url=fake_ollama.url, target=10))
    await run_service(cfg, until_done=True)
    conn = sqlite3.connect(cfg.service.db)
    rows = conn.execute(
        "SELECT s.datatype, s.payload, s.brief, b.template_hash, b.example_ids, b.model"
        " FROM samples s JOIN batches b ON b.id = s.batch_id WHERE s.status = 'accepted'"
    ).fetchall()
    conn.close()
    assert {r[0] for r in rows} == set(ALL_TYPES)
    for datatype, payload_text, brief_text, template_hash, example_ids, model in rows:
        payload, brief = json.loads(payload_text), json.loads(brief_text)
        assert brief["facets"] and brief["pins"], datatype
        for path, pin in brief["pins"].items():
            value = payload
            for key in path.split("."):
                value = value[key]
            if "const" in pin:
                assert value == pin["const"], (datatype, path)
            else:
                assert pin["min"] - 0.005 <= value <= pin["max"] + 0.005, (datatype, path)
        assert len(template_hash) == 12
        assert all(i.startswith(f"{datatype}:") for i in json.loads(example_ids))
        assert model.startswith("qwen3:")


async def test_same_model_phases_hand_over_without_a_gap(
    write_config: Callable[..., Path],
) -> None:
    """Two consecutive phases on one model: the second starts while the first's last answers
    are still coming, so the model's slots do not idle between them; a phase on another model
    waits for the one before to finish."""
    types = ("emotional_authenticity", "dramatic_irony", "personality_traits")  # q, q, volume
    with FakeOllama(FakeConfig(seed=3, time_scale=1.0, tokens_per_s=3000, load_s=0)) as server:
        cfg = load_config(write_config(url=server.url, target=24, types=types, num_parallel=4))
        with capture_logs() as logs:
            await run_service(cfg, until_done=True)
    handovers = [e["phase"] for e in logs if e["event"] == "phase.handover"]
    assert handovers == ["dramatic_irony"]
    conn = sqlite3.connect(cfg.service.db)
    spans = {
        t: conn.execute(
            "SELECT MIN(julianday(created_at)), MAX(julianday(created_at) + latency_s / 86400.0)"
            " FROM batches WHERE datatype = ?",
            (t,),
        ).fetchone()
        for t in types
    }
    conn.close()
    # The irony phase's first request went out before the last answer of the one before.
    assert spans["dramatic_irony"][0] < spans["emotional_authenticity"][1]
    # The volume model's phase started only after the quality model's last answer.
    assert spans["personality_traits"][0] >= spans["dramatic_irony"][1] - 1e-7
