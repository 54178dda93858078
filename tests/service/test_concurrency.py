"""Concurrency per model follows the server's queue: never above num_parallel, down when
requests wait in the server's queue, back up when they do not."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.config import load_config
from gen_service.service import concurrency
from gen_service.service.concurrency import AdaptiveConcurrency
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama

pytestmark = pytest.mark.anyio


async def test_waiting_lowers_the_limit_and_no_waiting_raises_it_to_the_cap() -> None:
    """A window of answers that waited half their time removes a slot; windows without
    waiting give slots back up to num_parallel and never beyond."""
    limiter = anyio.CapacityLimiter(4)
    control = AdaptiveConcurrency()
    for _ in range(concurrency.WINDOW):
        control.observe("m", limiter, wall_s=2.0, busy_s=1.0, most=4)
    assert limiter.total_tokens == 3
    for _ in range(concurrency.WINDOW * 5):
        control.observe("m", limiter, wall_s=1.0, busy_s=1.0, most=4)
    assert limiter.total_tokens == 4
    for _ in range(concurrency.WINDOW * 10):
        control.observe("m", limiter, wall_s=10.0, busy_s=1.0, most=4)
    assert limiter.total_tokens == 1


async def test_a_server_that_does_not_say_keeps_the_configured_limit() -> None:
    """Without the server's working time (OpenAI-compatible servers) nothing changes."""
    limiter = anyio.CapacityLimiter(4)
    control = AdaptiveConcurrency()
    for _ in range(concurrency.WINDOW * 3):
        control.observe("m", limiter, wall_s=5.0, busy_s=0.0, most=4)
    assert limiter.total_tokens == 4


async def test_a_server_with_fewer_slots_gets_fewer_requests(
    write_config: Callable[..., Path],
) -> None:
    """The fake runs 2 requests at a time and queues the rest; a client allowed 4 comes down
    to what the server runs, and no request is ever refused (no 503)."""
    fake = FakeConfig(seed=9, time_scale=1.0, tokens_per_s=6000, num_parallel=2, load_s=0)
    with FakeOllama(fake) as server:
        cfg = load_config(
            write_config(url=server.url, target=400, types=("personality_traits",), num_parallel=4)
        )
        with capture_logs() as logs:
            await run_service(cfg, until_done=True)
        stats = server.stats()
    adjusted = [e for e in logs if e["event"] == "concurrency.adjusted"]
    assert adjusted and min(int(e["slots"]) for e in adjusted) <= 2
    assert all(int(e["slots"]) <= 4 for e in adjusted)
    assert stats.status_counts.get(503, 0) == 0
    conn = sqlite3.connect(cfg.service.db)
    assert conn.execute("SELECT COUNT(*) FROM batches WHERE status = 'failed'").fetchone()[0] == 0
    conn.close()
