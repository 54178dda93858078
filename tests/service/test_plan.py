"""`gen-service plan` end to end: real config files, real SQLite databases, the real CLI."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from gen_service.adapters.store import Store
from gen_service.cli import main
from gen_service.config import load_config
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.errors import EXIT_CONFIG, EXIT_IOERR, EXIT_USAGE
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeOllama

from ..conftest import PROMPTS, REPO

NOW = "2026-03-02T12:00:00+00:00"


def production(tmp_path: Path) -> Path:
    """systemd/gen-service.toml with its database moved into tmp_path (none there yet)."""
    text = (REPO / "systemd" / "gen-service.toml").read_text()
    text = text.replace('"/var/lib/gen-service/samples.db"', f'"{tmp_path / "samples.db"}"')
    path = tmp_path / "gen-service.toml"
    path.write_text(text)
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    capsys.readouterr()
    assert main(["plan", "--json", *args]) == 0
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def one_type(tmp_path: Path, *, tokens_per_s: str = "tokens_per_s = 20", extra: str = "") -> Path:
    """One model (20 tok/s, one slot, a tag outside the size table), one type in 00:00-02:00,
    backfill off: T = 360 / 0.9 = 400, v = 20 / 400 = 0.05/s = 180/h, 360 a day."""
    path = tmp_path / "one.toml"
    path.write_text(
        f"""
[service]
db = "{tmp_path / "one.db"}"
prompts_dir = "{PROMPTS}"
timezone = "UTC"

[backend]
num_parallel = 1

[gpu]
vram_gb = 12

[models.m]
name = "custom:model"
{tokens_per_s}

[datatypes.tension_building]
model = "m"
batch_size = 10
temperature = 0.8
daily_target = 480
total_target = 1056
tokens_per_sample = 360
acceptance_rate = 0.9
{extra}

[schedule]
mode = "clock"
backfill = false

[[schedule.phases]]
name = "tb"
kind = "generate"
datatypes = ["tension_building"]
start = "00:00"
end = "02:00"
"""
    )
    return path


def test_production_config_shows_the_memo_shortfalls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The memo's speeds on one 12 GB GPU: the three qwen3:30b-a3b phases fall short (dramatic
    irony needs over 60 tok/s), the 8b phases make their targets, processing idles the GPU."""
    config = production(tmp_path)
    data = run_json(capsys, "--config", str(config), "--now", NOW)
    infeasible = set(data["infeasible"])  # type: ignore[arg-type]
    assert {"emotional-authenticity", "dramatic-irony", "tension-building"} <= infeasible
    assert not {"personality-traits", "relationship-scoring", "processing"} & infeasible
    phases = {p["name"]: p for p in data["phases"]}  # type: ignore[attr-defined]
    irony = phases["dramatic-irony"]
    assert irony["fixes"]["aggregate_tokens_per_s"]["qwen3:30b-a3b"] > 60
    assert irony["fixes"]["num_parallel"] is None  # more slots push more of it to the CPU
    assert irony["fixes"]["hours"] > 4
    assert phases["processing"]["idle_hours"] == pytest.approx(4.0)
    types = data["datatypes"]
    assert types["dramatic_irony"]["planned_per_day"] < 1200  # type: ignore[index]
    assert types["personality_traits"]["planned_per_day"] == pytest.approx(2000)  # type: ignore[index]
    models = {m["model"]: m for m in data["models"]}  # type: ignore[attr-defined]
    assert models["qwen3:30b-a3b"]["gpu_share"] < 0.6
    assert models["qwen3:30b-a3b"]["fits_vram"] is False
    assert models["qwen3:8b"]["gpu_share"] == 1.0
    assert data["completion"] is not None
    assert data["database"] is None  # no database yet: estimates
    assert main(["plan", "--config", str(config), "--now", NOW]) == 0
    text = capsys.readouterr().out
    assert "✗ dramatic-irony (04:00–08:00, 4.0 h) cannot meet its daily targets" in text
    assert "[datatypes.dramatic_irony] daily_target" in text
    assert "processing needs no GPU" in text


def test_json_carries_the_hand_computed_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """360 a day against 480: short 120, the phase needs 2 h + 120 / 180 h; a fresh database
    path means estimates and a completion date from --now."""
    data = run_json(capsys, "--config", str(one_type(tmp_path)), "--now", NOW)
    tb = data["datatypes"]["tension_building"]  # type: ignore[index]
    assert tb["tokens_per_accepted"] == pytest.approx(400)
    assert tb["tokens_source"] == "estimate"
    assert tb["samples_per_hour"] == pytest.approx(180)
    assert tb["planned_per_day"] == pytest.approx(360)
    assert tb["feasible"] is False
    # 1,056 at 360 a day from 2026-03-03 (12:00 is past today's phase): the third day.
    assert tb["completion"] == "2026-03-05"
    (phase,) = data["phases"][:1]  # type: ignore[index]
    assert phase["feasible"] is False
    assert phase["shortfall_per_day"] == pytest.approx(120)
    assert phase["fixes"]["hours"] == pytest.approx(2 + 120 / 180, abs=1e-3)
    assert phase["fixes"]["daily_target"] == {"tension_building": 360}
    assert data["infeasible"] == ["tb"]
    (model,) = data["models"]  # type: ignore[misc]
    assert model["aggregate_tokens_per_s"] == pytest.approx(20)
    assert model["gpu_share"] is None  # a tag outside the table: fit unknown
    assert any("VRAM fit unknown" in n for n in data["notes"])  # type: ignore[attr-defined]


async def _fill(db: Path) -> None:
    """12 batches of tension_building on custom:model, 8 of 10 accepted, 6,000 tokens each,
    two at a time for 120 s (parallel slots: six spans of 120 s are busy): T = 72,000 / 96 =
    750, acceptance 0.8, R = 72,000 / 720 s = 100 tok/s."""
    start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
    async with Store.open(db) as store:
        for b in range(12):
            samples = tuple(
                SampleRow(
                    "tension_building",
                    "accepted" if i < 8 else "rejected",
                    json.dumps({"n": b * 10 + i}),
                    content_hash=f"{b}-{i}",
                    reason=None if i < 8 else "too short",
                )
                for i in range(10)
            )
            await store.commit_batch(
                None,
                BatchRecord(
                    datatype="tension_building",
                    model="custom:model",
                    phase="tb",
                    status="ok",
                    attempts=1,
                    requested=10,
                    temperature=0.8,
                    num_predict=6000,
                    seed=b,
                    created_at=(start + dt.timedelta(seconds=120 * (b // 2))).isoformat(),
                    day="2026-03-02",
                    eval_tokens=6000,
                    eval_s=110.0,
                    latency_s=120.0,
                    samples=samples,
                ),
            )


def test_history_from_a_real_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tokens per accepted sample, acceptance and speed come from the batches; the 96 samples
    the database holds today count toward the total and toward today's quota."""
    db = tmp_path / "history.db"
    anyio.run(_fill, db)
    config = one_type(tmp_path)
    now = "2026-03-02T01:00:00+00:00"
    data = run_json(capsys, "--config", str(config), "--db", str(db), "--now", now)
    assert data["database"] == str(db)
    (model,) = data["models"]  # type: ignore[misc]
    assert model["speed_source"] == "history"
    assert model["aggregate_tokens_per_s"] == pytest.approx(100)
    assert model["measured"] == {"batches": 12, "eval_tokens": 72_000, "busy_s": 720.0}
    tb = data["datatypes"]["tension_building"]  # type: ignore[index]
    assert tb["tokens_source"] == "history"
    assert tb["tokens_per_accepted"] == pytest.approx(750)
    assert tb["acceptance_rate"] == pytest.approx(0.8)
    assert tb["accepted"] == 96
    # v = 100 / 750 per second = 480/h: 960 in the 2 h phase, so 480 a day is met.
    assert tb["samples_per_hour"] == pytest.approx(480)
    assert tb["planned_per_day"] == pytest.approx(480)
    assert tb["feasible"] is True
    # 960 left; today's last hour makes 480 - 96 = 384, then 480 on 2026-03-03 and the
    # last 96 on 2026-03-04.
    assert tb["completion"] == "2026-03-04"
    assert data["infeasible"] == []


def test_history_from_a_service_run(
    fake_ollama: FakeOllama,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After a real (sequential) run against the fake Ollama the plan takes tokens per sample
    from the batches; a run at time scale 0 took no time, so speeds stay the configured ones."""
    path = write_config(url=fake_ollama.url, target=60, types=("personality_traits",))
    path.write_text(
        path.read_text().replace('name = "qwen3:8b"', 'name = "qwen3:8b"\ntokens_per_s = 42')
    )
    cfg = load_config(path)
    outcome = anyio.run(lambda: run_service(cfg, until_done=True))
    assert outcome.reason == "done"
    data = run_json(capsys, "--config", str(path), "--now", NOW)
    pt = data["datatypes"]["personality_traits"]  # type: ignore[index]
    assert pt["tokens_source"] == "history"
    assert pt["accepted"] >= 60
    assert pt["status"] == "done"
    models = {m["model"]: m for m in data["models"]}  # type: ignore[attr-defined]
    assert models["qwen3:8b"]["speed_source"] == "config"
    assert data["pass_hours"] is not None and data["mode"] == "sequential"


def test_sequential_config_says_how_long_a_pass_takes(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Sequential mode: each phase's hours in a pass and the pass's length, in text and JSON."""
    path = write_config(target=600, batch_size=10)
    text = path.read_text().replace("num_ctx = 8192\n", "num_ctx = 8192\ntokens_per_s = 30\n")
    path.write_text(text)
    data = run_json(capsys, "--config", str(path), "--now", NOW)
    hours = [p["hours"] for p in data["phases"]]  # type: ignore[attr-defined]
    assert len(hours) == 5 and all(h > 0 for h in hours)
    assert data["pass_hours"] == pytest.approx(sum(hours), rel=1e-3)
    assert main(["plan", "--config", str(path), "--now", NOW]) == 0
    assert "A pass over the phases takes" in capsys.readouterr().out


def test_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken config is 78, an unreadable --db 74, a bad --now 64; a short plan is 0."""
    config = one_type(tmp_path)
    assert main(["plan", "--config", str(config)]) == 0
    broken = one_type(tmp_path, tokens_per_s="tokens_per_s = -3")
    assert main(["plan", "--config", str(broken)]) == EXIT_CONFIG
    config = one_type(tmp_path)
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a database\n" * 100)
    assert main(["plan", "--config", str(config), "--db", str(not_a_db)]) == EXIT_IOERR
    missing = tmp_path / "missing.db"
    assert main(["plan", "--config", str(config), "--db", str(missing)]) == EXIT_IOERR
    assert main(["plan", "--config", str(config), "--now", "tomorrow"]) == EXIT_USAGE
    assert "is not an ISO 8601 date" in capsys.readouterr().err


def test_speed_unknown_is_said_not_guessed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model with no tokens_per_s and no history: no numbers, and the note names the key."""
    data = run_json(capsys, "--config", str(one_type(tmp_path, tokens_per_s="")), "--now", NOW)
    tb = data["datatypes"]["tension_building"]  # type: ignore[index]
    assert tb["planned_per_day"] is None and tb["status"] == "unknown"
    assert any("[models.m] tokens_per_s" in n for n in data["notes"])  # type: ignore[attr-defined]
