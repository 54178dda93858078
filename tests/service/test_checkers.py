"""Check worker processes (service.check_workers): real processes, the same rows as the event
loop, a dead worker's batch checked on the event loop, and a whole run with a worker."""

from __future__ import annotations

import os
import random
import runpy
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.config import load_config
from gen_service.domain.checking import rules_for
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.rows import _to_json, check_answers
from gen_service.service import checkers as checkers_module
from gen_service.service.checkers import Checkers
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeOllama

from ..conftest import config_text
from ..domain.test_rows import answers_of

pytestmark = pytest.mark.anyio

NAME = "personality_traits"


def batch() -> tuple[list, list, list[str], dict]:  # type: ignore[type-arg]
    spec = REGISTRY[NAME]
    answers = answers_of(NAME)
    contexts = spec.sample_contexts(random.Random(5), len(answers))
    briefs = [_to_json(c.to_json()) for c in contexts]
    return answers, contexts, briefs, dict(rules_for(spec, None))


def big(answers: list, contexts: list, briefs: list[str]) -> tuple[list, list, list[str]]:  # type: ignore[type-arg]
    """The batch 200 times over (~2,400 items): about a second of a worker's time."""
    many = [(i, raw) for i, (_, raw) in enumerate(answers * 200)]
    return (
        many,
        [contexts[i % len(contexts)] for i in range(len(many))],
        [briefs[i % len(briefs)] for i in range(len(many))],
    )


def worker_pids() -> set[int]:
    """This process's check workers (anyio's to_process children)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"anyio.to_process" in cmdline:
            pids.add(int(entry.name))
    return pids


async def test_a_worker_process_checks_a_batch_as_the_event_loop_does() -> None:
    """With one worker the rows come from another process, equal to the event loop's."""
    spec = REGISTRY[NAME]
    answers, contexts, briefs, rules = batch()
    checkers = Checkers()
    here = await checkers.rows(0, spec, answers, contexts, briefs, rules)
    assert not worker_pids()
    there = await checkers.rows(1, spec, answers, contexts, briefs, rules)
    assert worker_pids(), "no worker process was started"
    assert there == here == check_answers(spec, answers, contexts, briefs, rules)
    assert checkers.failures == 0


async def test_a_worker_killed_mid_check_leaves_its_batch_to_the_event_loop() -> None:
    """A worker killed while it checks a batch: the batch is checked on the event loop
    instead (the same rows), the failure is logged, and the next batch gets a new worker."""
    spec = REGISTRY[NAME]
    answers, contexts, briefs, rules = batch()
    many, contexts, briefs = big(answers, contexts, briefs)
    checkers = Checkers()
    await checkers.rows(1, spec, answers, contexts, briefs, rules)  # the worker is up
    (worker,) = worker_pids()
    expected = check_answers(spec, many, contexts, briefs, rules)
    result: dict[str, object] = {}

    async def check() -> None:
        result["rows"] = await checkers.rows(1, spec, many, contexts, briefs, rules)

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(check)
            await anyio.sleep(0.3)
            os.kill(worker, signal.SIGKILL)
    assert result["rows"] == expected
    assert checkers.failures == 1
    failed = [e for e in logs if e["event"] == "checks.worker_failed"]
    assert len(failed) == 1 and "BrokenWorkerProcess" in failed[0]["error"]
    assert await checkers.rows(1, spec, answers, contexts, briefs, rules)
    assert checkers.failures == 1
    assert worker_pids() - {worker}


def test_the_main_module_does_not_run_the_cli_when_a_worker_loads_it() -> None:
    """A worker loads the parent's main module under another name (as multiprocessing's spawn
    does); ``python -m gen_service``'s must not start a second gen-service there."""
    main = Path(__file__).resolve().parents[2] / "gen_service" / "__main__.py"
    namespace = runpy.run_path(str(main), run_name="__mp_main__")
    assert callable(namespace["main"])


async def test_a_run_with_a_check_worker_reaches_its_targets(
    fake_ollama: FakeOllama, tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """A whole run against the fake Ollama with check_workers = 1: every type reaches its
    target, no worker failed, and the rows carry signatures and briefs as the loop's do."""
    text = config_text(url=fake_ollama.url, db=tmp_path / "samples.db", target=15)
    cfg = load_config(write_config(text.replace("[service]\n", "[service]\ncheck_workers = 1\n")))
    assert cfg.service.check_workers == 1
    with capture_logs() as logs:
        outcome = await run_service(cfg, until_done=True)
    assert outcome.reason == "done"
    assert not [e for e in logs if e["event"] == "checks.worker_failed"]
    conn = sqlite3.connect(cfg.service.db)
    progress = dict(conn.execute("SELECT datatype, accepted FROM progress").fetchall())
    missing = conn.execute(
        "SELECT COUNT(*) FROM samples s LEFT JOIN signatures g ON g.sample_id = s.id"
        " WHERE s.status = 'accepted' AND (g.signature IS NULL OR s.brief IS NULL)"
    ).fetchone()[0]
    conn.close()
    assert all(n >= 15 for n in progress.values()), progress
    assert len(progress) == 5
    assert missing == 0


async def test_workers_that_keep_failing_are_left_alone_until_a_reload() -> None:
    """Three batches in a row the workers cannot take (here: an answer that cannot be sent to
    another process): each is checked on the event loop, then the workers are given up with
    an error until check_workers changes."""
    spec = REGISTRY[NAME]
    answers, contexts, briefs, rules = batch()
    unsendable = [*answers[:-1], (answers[-1][0], {"note": lambda: None})]
    checkers = Checkers()
    with capture_logs() as logs:
        for _ in range(3):
            rows = await checkers.rows(1, spec, unsendable, contexts, briefs, rules)
            assert len(rows) == len(unsendable)
        assert checkers.failures == 3
        assert await checkers.rows(1, spec, answers, contexts, briefs, rules)
        assert checkers.failures == 3  # not sent to a worker: given up
        assert not worker_pids()
    given_up = [e for e in logs if e["event"] == "checks.workers_given_up"]
    assert len(given_up) == 1 and given_up[0]["log_level"] == "error"
    assert await checkers.rows(2, spec, answers, contexts, briefs, rules)  # a reload: 2 now
    assert worker_pids()
    assert checkers.failures == 3


async def test_a_stuck_worker_is_killed_and_its_batch_checked_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker still checking after CHECK_TIMEOUT_S (here a big batch against a tiny limit)
    is killed; the batch's rows come from the event loop, and the next batch gets a new
    worker."""
    spec = REGISTRY[NAME]
    answers, contexts, briefs, rules = batch()
    many, contexts, briefs = big(answers, contexts, briefs)
    checkers = Checkers()
    await checkers.rows(1, spec, answers, contexts, briefs, rules)  # the worker is up
    (worker,) = worker_pids()
    monkeypatch.setattr(checkers_module, "CHECK_TIMEOUT_S", 0.05)
    with capture_logs() as logs:
        rows = await checkers.rows(1, spec, many, contexts, briefs, rules)
    assert rows == check_answers(spec, many, contexts, briefs, rules)
    assert checkers.failures == 1
    assert [e["error"].split(":")[0] for e in logs if e["event"] == "checks.worker_failed"] == [
        "TimeoutError"
    ]
    assert worker not in worker_pids()
    monkeypatch.setattr(checkers_module, "CHECK_TIMEOUT_S", 60.0)
    assert await checkers.rows(1, spec, answers, contexts, briefs, rules)
    assert worker_pids() and worker not in worker_pids()


async def test_a_bug_in_the_checks_is_raised_and_not_blamed_on_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the batch also fails on the event loop (a bug in the checks, not in a worker),
    the error is raised (the producer records a crashed batch) and no worker failure is
    counted."""
    spec = REGISTRY[NAME]
    answers, contexts, briefs, rules = batch()
    unsendable = [*answers[:-1], (answers[-1][0], {"note": lambda: None})]

    def broken(*_: object) -> list[object]:
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr(checkers_module, "check_answers", broken)
    checkers = Checkers()
    with pytest.raises(RuntimeError, match="a bug in a check"):
        await checkers.rows(1, spec, unsendable, contexts, briefs, rules)
    assert checkers.failures == 0
