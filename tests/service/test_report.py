"""The daily report end to end: a real run against the fake Ollama (generate, validate, process)
writes it; `gen-service report` reads it back in three forms; headless Chromium renders the HTML
page with its charts."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import random
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.adapters.factory import open_backend
from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.adapters.store import Store
from gen_service.cli import main
from gen_service.config import load_config
from gen_service.errors import EXIT_IOERR, EXIT_USAGE, StoreError
from gen_service.service.board import ProgressBoard
from gen_service.service.clock import ScaledClock, SystemClock
from gen_service.service.gate import BackendGate
from gen_service.service.producer import Generation
from gen_service.service.regeneration import Regenerations
from gen_service.service.runner import Control, ProcessingJob, ScheduleRunner
from gen_service.service.scheduler import ModelScheduler
from gen_service.service.supervisor import run_service
from gen_service.service.writer import PendingWrite
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama, JudgeBehaviour

from ..conftest import ALL_TYPES, REPO, config_text
from .test_judge import judged_config

CHARTS = ("chart-progress", "chart-hourly", "chart-quality")


@dataclass(frozen=True)
class Produced:
    config: Path
    db: Path
    reports: Path
    day: str


def with_process_phase(text: str, reports: Path) -> str:
    """A config with a process phase last and its reports folder set."""
    text = text.replace("[service]\n", f'[service]\nreports_dir = "{reports}"\n', 1)
    return text + '\n[[schedule.phases]]\nname = "processing"\nkind = "process"\n'


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Produced]:
    """One sequential run with generate, validate and process phases against a fake whose
    judge scores a third low (so batches are flagged and regenerated); run once per module."""
    tmp = tmp_path_factory.mktemp("report")
    behaviour = JudgeBehaviour(low_quality_share=0.3, label_disagreement_share=0.1)
    with FakeOllama(FakeConfig(time_scale=0.0, seed=21, judge=behaviour)) as fake:
        base = config_text(url=fake.url, db=tmp / "samples.db", target=12, batch_size=4)
        text = with_process_phase(judged_config(base, rate=0.25), tmp / "reports")
        path = tmp / "gen-service.toml"
        path.write_text(text)
        assert main(["run", "--config", str(path), "--until-done"]) == 0
    yield Produced(
        path, tmp / "samples.db", tmp / "reports", dt.datetime.now(dt.UTC).date().isoformat()
    )


def sql(db: Path, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


# -- the process phase ------------------------------------------------------------------------


def test_sequential_run_writes_the_days_report(produced: Produced) -> None:
    """Generate, validate, process: the day's report in three forms, counts as in the db."""
    files = sorted(p.name for p in produced.reports.iterdir())
    assert files == [f"{produced.day}.{s}" for s in ("html", "json", "txt")]
    data = json.loads((produced.reports / f"{produced.day}.json").read_text())
    counts = {
        d: (a, r, u)
        for d, a, r, u in sql(
            produced.db,
            "SELECT datatype, accepted, rejected, duplicates FROM daily_counts WHERE day = ?",
            (produced.day,),
        )
    }
    assert set(data["types"]) == set(ALL_TYPES)
    for name, t in data["types"].items():
        assert (t["accepted"], t["rejected"], t["duplicates"]) == counts[name], name
        assert t["accepted"] >= 12 and t["daily_target"] == 12
    assert data["status"]["state"] == "done"
    assert "<svg" in (produced.reports / f"{produced.day}.html").read_text()


def test_report_quality_and_batches_match_the_judgments(produced: Produced) -> None:
    """Judged counts and means are the day's judgments; flagged/regenerated are the batches'."""
    data = json.loads((produced.reports / f"{produced.day}.json").read_text())
    judged = dict(
        sql(
            produced.db,
            "SELECT datatype, COUNT(*) FROM judgments WHERE day = ? GROUP BY datatype",
            (produced.day,),
        )
    )
    mean = sql(produced.db, "SELECT AVG(overall) FROM judgments WHERE day = ?", (produced.day,))
    flagged = sql(produced.db, "SELECT COUNT(*) FROM batches WHERE flagged = 1")[0][0]
    regenerated = sql(
        produced.db, "SELECT COUNT(*) FROM batches WHERE replaces IS NOT NULL AND status = 'ok'"
    )[0][0]
    for name, t in data["types"].items():
        assert t["quality"]["judged"] == judged[name]
    assert data["totals"]["quality"]["overall"] == pytest.approx(mean[0][0], abs=0.0015)
    assert data["totals"]["batches"]["flagged"] == flagged > 0
    assert data["totals"]["batches"]["regenerated"] == regenerated > 0
    assert sum(data["score_histogram"]["by_type"][ALL_TYPES[0]]) == judged[ALL_TYPES[0]]


def test_rejections_are_counted_by_reason_code(produced: Produced) -> None:
    """Each type's rejection codes add up to its rejected samples; a code has no detail."""
    data = json.loads((produced.reports / f"{produced.day}.json").read_text())
    for t in data["types"].values():
        assert sum(r["count"] for r in t["rejections"]) == t["rejected"]
        assert all(":" not in r["code"] and " " not in r["code"] for r in t["rejections"])
    assert data["totals"]["rejected"] > 0  # random fake samples break the checks at times


def test_report_holds_the_diversity_figures(produced: Produced) -> None:
    """Per type: distinct-2, openings, cells filled by the stored briefs, label histograms."""
    data = json.loads((produced.reports / f"{produced.day}.json").read_text())
    for name, t in data["types"].items():
        d = t["diversity"]
        assert d["samples"] == t["accepted"], name
        assert 0 < d["distinct_2"] <= 1
        assert d["openings"] and all(len(f["top"]) <= 10 for f in d["openings"])
        cov = d["coverage"]
        assert 0 < cov["cells_filled"] <= cov["cells"] and cov["quota_filled"] >= 1
        assert all(sum(x["observed"]) <= t["accepted"] for x in d["labels"])


# -- the command ------------------------------------------------------------------------------


def test_report_command_prints_text_and_json(
    produced: Produced, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --out, text and JSON go to stdout; both hold the status line."""
    assert main(["report", "--config", str(produced.config)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Day 1 Production Report, {produced.day}")
    assert main(["report", "--config", str(produced.config), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["day"] == produced.day and data["day_number"] == 1
    assert f"Status: {data['status']['line']}" in text
    # The run was on the fake Ollama: the report says its samples are not real data.
    assert data["test_data_samples"] == data["totals"]["accepted"] > 0
    assert "test double" in data["issues"][0] and "test double" in text


def test_html_goes_to_out_or_the_reports_folder(
    produced: Produced, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out writes there; without it the HTML page goes to the reports folder."""
    out = tmp_path / "page.html"
    assert (
        main(["report", "--config", str(produced.config), "--format", "html", "--out", str(out)])
        == 0
    )
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", "--config", str(produced.config), "--format", "html"]) == 0
    assert str(produced.reports / f"{produced.day}.html") in capsys.readouterr().out


def test_a_day_without_data_is_an_empty_report(
    produced: Produced, capsys: pytest.CaptureFixture[str]
) -> None:
    """A day before the run: zeros, no day number, the totals still known."""
    args = ["report", "--config", str(produced.config), "--day", "2000-01-01", "--format", "json"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["day_number"] is None and data["totals"]["accepted"] == 0
    assert data["totals"]["accepted_total"] == 0


@pytest.mark.parametrize(
    "args", [["--day", "yesterday"], ["--day", "2025-02-30"], ["--format", "pdf"]]
)
def test_bad_day_or_format_exits_64(
    produced: Produced, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A day that is not YYYY-MM-DD or an unknown format is a usage error."""
    assert main(["report", "--config", str(produced.config), *args]) == EXIT_USAGE
    assert "report" in capsys.readouterr().err


def test_database_problems_exit_74(
    produced: Produced, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No database yet, or a file that is not one: exit 74 with the path."""
    missing = produced.config.read_text().replace(str(produced.db), str(tmp_path / "none.db"))
    path = tmp_path / "missing.toml"
    path.write_text(missing)
    assert main(["report", "--config", str(path)]) == EXIT_IOERR
    assert "none.db" in capsys.readouterr().err
    (tmp_path / "junk.db").write_text("not a database " * 100)
    path.write_text(missing.replace("none.db", "junk.db"))
    assert main(["report", "--config", str(path)]) == EXIT_IOERR


def test_unwritable_out_exits_74(
    produced: Produced, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report that cannot be written (its folder is a file) is an I/O error, exit 74."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = ["report", "--config", str(produced.config), "--out", str(blocker / "r.txt")]
    assert main(args) == EXIT_IOERR
    assert "cannot write the report" in capsys.readouterr().err


def test_database_text_is_escaped_in_the_page(produced: Produced, tmp_path: Path) -> None:
    """A reason written into the database with markup shows as text in the HTML page."""
    db = tmp_path / "copy.db"
    src, dst = sqlite3.connect(produced.db), sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.execute(
        "UPDATE samples SET reason = '<script>alert(1)</script>: injected'"
        " WHERE id = (SELECT MIN(id) FROM samples WHERE status = 'rejected')"
    )
    dst.commit()
    dst.close()
    path = tmp_path / "copy.toml"
    path.write_text(produced.config.read_text().replace(str(produced.db), str(db)))
    out = tmp_path / "page.html"
    assert main(["report", "--config", str(path), "--format", "html", "--out", str(out)]) == 0
    page = out.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page


def files_in(paths: list[str]) -> set[Path]:
    """The folders holding ``paths``, which must all be files."""
    assert all(Path(p).is_file() for p in paths), paths
    return {Path(p).parent for p in paths}


# -- clock mode: processing beside generation ------------------------------------------------


@pytest.mark.anyio
async def test_clock_process_phase_keeps_the_model_generating(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A clock process phase writes the report while the resident model keeps generating."""
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    clock = ScaledClock(start, speed=60.0)  # a schedule minute in a real second
    hhmm = [(start + dt.timedelta(minutes=m)).strftime("%H:%M") for m in (0, 1, 4)]
    with FakeOllama(FakeConfig(time_scale=0.01, seed=4)) as fake:
        base = write_config(
            url=fake.url, target=100000, daily=100000, types=("personality_traits",)
        ).read_text()
        text = base[: base.index("[schedule]")] + (
            '[schedule]\nmode = "clock"\nbackfill = true\n'
            f'\n[[schedule.phases]]\nname = "traits"\nkind = "generate"\n'
            f'datatypes = ["personality_traits"]\nstart = "{hhmm[0]}"\nend = "{hhmm[1]}"\n'
            f'\n[[schedule.phases]]\nname = "tidy"\nkind = "process"\n'
            f'start = "{hhmm[1]}"\nend = "{hhmm[2]}"\n'
        )
        cfg = load_config(write_config(text, name="clock.toml"))
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(run_service, cfg, clock=clock))
                await anyio.sleep(clock.seconds_until(start + dt.timedelta(minutes=3)))
                tg.cancel_scope.cancel()
    written = [e for e in logs if e["event"] == "report.written"]
    assert written and written[0]["phase"] == "tidy"
    assert files_in(written[0]["paths"]) == {cfg.service.reports_path()}
    beside = [
        i
        for i, e in enumerate(logs)
        if e["event"] == "batch.committed" and e.get("phase") == "tidy"
    ]
    assert beside and max(beside) > logs.index(written[0])  # generation went on after it
    in_process = sql(cfg.service.db, "SELECT COUNT(*) FROM batches WHERE phase = 'tidy'")[0][0]
    assert in_process > 0


# -- rendering in a real browser --------------------------------------------------------------


def chromium() -> str:
    """Debian's chromium, or skip: scripts/verify-report --install puts it there (CI does)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("chromium is not installed; run scripts/verify-report --install (CI does)")


def dump_dom(page: Path, profile: Path) -> str:
    """The DOM headless Chromium builds from ``page``, with no network. (Scripts stay on:
    --dump-dom reads the DOM through script; the page has none, a pure test says so.)"""
    flags = [
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    result = subprocess.run(
        [chromium(), *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.chromium
@pytest.mark.timeout(180)
def test_chromium_renders_the_charts(produced: Produced, tmp_path: Path) -> None:
    """Headless Chromium renders the page: every chart's <svg>, id and title is in the DOM."""
    page = produced.reports / f"{produced.day}.html"
    dom = dump_dom(page, tmp_path / "profile")
    for chart in CHARTS:
        assert f'id="{chart}"' in dom, chart
        assert f'<title id="{chart}-title">' in dom, chart
    assert 'id="chart-labels-emotional-authenticity-capacity-band"' in dom
    assert dom.count("<rect") > 50
    assert "Status: Done" in dom


@pytest.mark.chromium
@pytest.mark.timeout(180)
def test_verify_report_script_checks_a_page(produced: Produced, tmp_path: Path) -> None:
    """scripts/verify-report passes the written page and fails one whose chart is gone."""
    chromium()
    script = REPO / "scripts" / "verify-report"
    page = produced.reports / f"{produced.day}.html"
    ok = subprocess.run([script, str(page)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "chart-hourly" in ok.stdout
    # An unclosed <textarea> turns the charts after it into text: they do not render.
    broken = tmp_path / "broken.html"
    html = page.read_text()
    at = html.index('<svg xmlns="http://www.w3.org/2000/svg" id="chart-quality"')
    broken.write_text(html[:at] + "<textarea>" + html[at:])
    bad = subprocess.run([script, str(broken)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "missing from the rendered page: chart-quality" in bad.stderr


# -- the processing hook ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_processing_steps_run_before_the_report(produced: Produced, tmp_path: Path) -> None:
    """Each processing step gets the day and the store; a failing one is logged, not fatal."""
    cfg = load_config(produced.config)
    cfg = cfg.model_copy(
        update={"service": cfg.service.model_copy(update={"reports_dir": tmp_path / "out"})}
    )
    seen: list[tuple[str, str, bool]] = []

    async def sweep(job: ProcessingJob) -> None:
        seen.append((job.phase, job.day, (tmp_path / "out").exists()))
        await job.store.type_counts(job.day)  # the service's own connection works

    async def broken(job: ProcessingJob) -> None:
        raise StoreError("the sweep could not read its signatures")

    async with open_backend(cfg) as backend, Store.open(cfg.service.db) as store:
        clock = SystemClock()
        gen = Generation(
            cfg=cfg,
            backend=backend,
            library=load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes)),
            board=ProgressBoard(cfg, {}, produced.day),
            limiters={},
            stopping=anyio.Event(),
            rng=random.Random(0),
            gate=BackendGate(backend),
            clock=clock,
            store=store,
            regenerations=Regenerations(store),
        )
        scheduler = ModelScheduler(backend, store, 1, budget_bytes=None, num_parallel=1)
        tx, rx = anyio.create_memory_object_stream[PendingWrite](1)
        async with tx, rx:
            runner = ScheduleRunner(
                gen, scheduler, Control(), tx, clock, processing=[broken, sweep]
            )
            with capture_logs() as logs:
                await runner._process("tidy")
    assert seen == [("tidy", produced.day, False)]  # the step ran before the report existed
    failed = [e for e in logs if e["event"] == "process.step_failed"]
    assert failed and failed[0]["step"] == "broken" and "signatures" in failed[0]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{produced.day}.{s}" for s in ("html", "json", "txt")
    ]


def test_the_run_ends_with_an_exportable_dataset(
    produced: Produced, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generate, validate and process run ends with a dataset: every accepted sample has
    a signature and a cluster (so the splits keep clusters whole), and the export of what the
    judge passed loads with the `datasets` library, offline."""
    datasets = pytest.importorskip("datasets")
    unsigned = sql(
        produced.db,
        "SELECT COUNT(*) FROM samples x LEFT JOIN signatures s ON s.sample_id = x.id"
        " WHERE x.status = 'accepted' AND (s.sample_id IS NULL OR x.cluster_id IS NULL)",
    )[0][0]
    assert unsigned == 0
    out = tmp_path / "dataset"
    args = ["export", "--config", str(produced.config), "--out", str(out), "--include-test-data"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    exported = 0
    for name, info in manifest["datatypes"].items():
        if not sum(info["rows"].values()):
            continue
        ds = datasets.load_dataset(str(out), name, cache_dir=str(tmp_path / "hf"))
        exported += sum(ds[s].num_rows for s in ds)
        clusters: dict[int, set[str]] = {}
        for split in ds:
            for r in ds[split]:
                clusters.setdefault(r["cluster_id"], set()).add(split)
        assert all(len(splits) == 1 for splits in clusters.values()), name
    passed = sql(
        produced.db,
        "SELECT COUNT(*) FROM samples s JOIN batches b ON b.id = s.batch_id"
        " WHERE s.status = 'accepted' AND b.judged_at IS NOT NULL AND b.flagged = 0",
    )[0][0]
    assert exported == passed > 0
