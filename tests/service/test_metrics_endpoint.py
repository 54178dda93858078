"""`[service] metrics_addr`: /metrics (Prometheus text) and /status (JSON) from a running
service over real HTTP on 127.0.0.1, checked against the real database."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from gen_service.cli import main
from gen_service.config import load_config
from gen_service.errors import EXIT_CONFIG, ConfigError
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama, JudgeBehaviour

from ..conftest import ALL_TYPES, free_port

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scraped(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def with_service_keys(config: Path, **keys: str) -> str:
    lines = "".join(f'{k} = "{v}"\n' for k, v in keys.items())
    return config.read_text().replace("[service]\n", f"[service]\n{lines}", 1)


async def poll(
    client: httpx.AsyncClient, check: Callable[[Samples], bool], limit_s: float = 30.0
) -> Samples:
    """Scrape /metrics until ``check`` holds; the last scrape either way."""
    with anyio.move_on_after(limit_s):
        while True:
            samples = scraped((await client.get("/metrics")).text)
            if check(samples):
                return samples
            await anyio.sleep(0.02)
    return scraped((await client.get("/metrics")).text)


async def until(predicate: Callable[[], bool], limit_s: float = 30.0) -> bool:
    """Poll a condition (the service's log) until it holds; False after ``limit_s``."""
    deadline = anyio.current_time() + limit_s
    while anyio.current_time() < deadline:
        if predicate():
            return True
        await anyio.sleep(0.02)
    return predicate()


def db_counts(
    db: Path,
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], tuple[int, ...]]]:
    conn = sqlite3.connect(db)
    try:
        samples = {
            (d, s): n
            for d, s, n in conn.execute(
                "SELECT datatype, status, COUNT(*) FROM samples GROUP BY datatype, status"
            )
        }
        batches = {
            (d, s): (n, decoded, wasted)
            for d, s, n, decoded, wasted in conn.execute(
                "SELECT datatype, status, COUNT(*), SUM(eval_tokens), SUM(wasted_tokens)"
                " FROM batches GROUP BY datatype, status"
            )
        }
        return samples, batches
    finally:
        conn.close()


async def test_metrics_and_status_match_the_database(
    write_config: Callable[..., Path],
) -> None:
    """While a run generates, /metrics names its phase; once the targets are met, its sample,
    batch and token counters and accepted gauges equal the database's, and /status is the
    `status --json` object of that database."""
    port = free_port()
    types = ALL_TYPES[:2]
    fake = FakeConfig(time_scale=1.0, tokens_per_s=20_000, load_s=0, seed=11)
    with FakeOllama(fake) as server:
        base = write_config(url=server.url, target=20, types=types)
        text = with_service_keys(base, metrics_addr=f"127.0.0.1:{port}")
        cfg = load_config(write_config(text, name="metrics.toml"))
        url = f"http://127.0.0.1:{port}"
        with capture_logs() as logs:
            async with httpx.AsyncClient(base_url=url) as client, anyio.create_task_group() as tg:
                tg.start_soon(run_service, cfg)
                assert await until(lambda: any(e["event"] == "metrics.listening" for e in logs))

                def in_phase(s: Samples) -> bool:
                    return any(
                        name == "gen_service_phase_info" and dict(labels).get("phase") in types
                        for name, labels in s
                    )

                running = await poll(client, in_phase)
                assert in_phase(running), "no phase seen while generating"
                assert await until(lambda: any(e["event"] == "schedule.targets_met" for e in logs))
                final = scraped((await client.get("/metrics")).text)
                status = await client.get("/status")
                missing = await client.get("/nothing")
                posted = await client.post("/metrics")
                tg.cancel_scope.cancel()
    samples_in_db, batches_in_db = db_counts(cfg.service.db)
    for d in types:
        for status_name in ("accepted", "rejected", "duplicate"):
            got = value(final, "gen_service_samples_total", datatype=d, status=status_name)
            assert got == samples_in_db.get((d, status_name), 0), (d, status_name)
        for batch_status in ("ok", "failed"):
            n, _, _ = batches_in_db.get((d, batch_status), (0, 0, 0))
            assert value(final, "gen_service_batches_total", datatype=d, status=batch_status) == n
        model = cfg.models[cfg.datatypes[d].model].name
        decoded = sum(v[1] for (t, _), v in batches_in_db.items() if t == d)
        wasted = sum(v[2] for (t, _), v in batches_in_db.items() if t == d)
        assert decoded > 0
        assert value(final, "gen_service_tokens_decoded_total", datatype=d, model=model) == decoded
        assert value(final, "gen_service_tokens_wasted_total", datatype=d, model=model) == wasted
        accepted = samples_in_db[(d, "accepted")]
        assert value(final, "gen_service_accepted_samples", datatype=d) == accepted >= 20
        assert value(final, "gen_service_total_target", datatype=d) == 20
    assert value(final, "gen_service_gate_state", state="open") == 1
    assert value(final, "gen_service_paused") == 0
    assert value(final, "gen_service_writer_queue_depth") == 0
    assert value(final, "gen_service_phase_info", phase="", models="") == 1  # targets met
    assert status.status_code == 200 and status.headers["content-type"] == "application/json"
    body = status.json()
    assert body["service_running"] is True
    assert body["samples_generated"] == sum(samples_in_db[(d, "accepted")] for d in types)
    assert list(body["datatypes"]) == list(types)
    assert missing.status_code == 404 and posted.status_code == 405


async def test_judge_scores_appear_once_batches_are_judged(
    write_config: Callable[..., Path],
) -> None:
    """With a validate phase, /metrics gives the judged samples, mean overall score and
    flagged batches per type, equal to the database's judgments."""
    port = free_port()
    fake = FakeConfig(time_scale=0.0, seed=12, judge=JudgeBehaviour(low_quality_share=0.5))
    with FakeOllama(fake) as server:
        base = write_config(url=server.url, target=10, types=ALL_TYPES[2:3])
        text = with_service_keys(base, metrics_addr=f":{port}")
        text = text.replace(
            "[models.volume]", '[models.judge]\nname = "qwen3:32b"\n\n[models.volume]'
        )
        text += '\n[[schedule.phases]]\nname = "judge"\nkind = "validate"\n'
        text += "\n[validation]\nsample_rate = 0.5\nregenerate_flagged = false\n"
        cfg = load_config(write_config(text, name="judged.toml"))
        with capture_logs() as logs:
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=url) as c, anyio.create_task_group() as tg:
                tg.start_soon(run_service, cfg)
                assert await until(lambda: any(e["event"] == "schedule.targets_met" for e in logs))
                final = scraped((await c.get("/metrics")).text)
                tg.cancel_scope.cancel()
    conn = sqlite3.connect(cfg.service.db)
    judged, mean = conn.execute("SELECT COUNT(*), AVG(overall) FROM judgments").fetchone()
    flagged = conn.execute("SELECT COUNT(*) FROM batches WHERE flagged = 1").fetchone()[0]
    conn.close()
    d = ALL_TYPES[2]
    assert judged > 0 and flagged > 0
    assert value(final, "gen_service_judged_samples", datatype=d) == judged
    assert value(final, "gen_service_judge_overall_mean", datatype=d) == pytest.approx(mean)
    assert value(final, "gen_service_batches_flagged", datatype=d) == flagged


# -- bad addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "problem"),
    [
        ("9464", "not a listening address"),
        ("http://127.0.0.1:9464", "not a listening address"),
        ("127.0.0.1:99999", "port must be a number from 1 to 65535"),
        ("::1:9464", "needs brackets"),
    ],
)
def test_bad_metrics_addr_is_a_config_error(
    addr: str, problem: str, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A metrics_addr that is not host:port fails check-config (exit 78), naming the key and
    the fix."""
    path = write_config(with_service_keys(write_config(), metrics_addr=addr), name="bad.toml")
    assert main(["check-config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "[service] metrics_addr" in err and problem in err and "Fix:" in err


def test_port_in_use_is_a_start_up_config_error(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A port another process holds stops `run` before any request: exit 78 with one message
    naming the key and the fix, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = with_service_keys(write_config(), metrics_addr=f"127.0.0.1:{port}")
        path = write_config(text, name="taken.toml")
        with pytest.raises(ConfigError, match=r"metrics_addr: cannot listen on 127\.0\.0\.1"):
            anyio.run(_run, path)
        assert main(["run", "--config", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "service.failed" in err and "metrics_addr" in err and "Fix:" in err
    assert "Traceback" not in err


async def _run(path: Path) -> None:
    await run_service(load_config(path))
