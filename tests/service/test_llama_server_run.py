"""The done-when run: the service on the openai backend against a real
``python -m llama_cpp.server`` serving SmolLM2, every data type with the default
``max_string_chars`` and ``grammar_safe``, produces accepted samples and the server survives.

Before grammar-safe schemas the first emotional-authenticity request killed the server (a
segfault on a grammar llama.cpp refuses) and the service probed a dead backend with 0 samples.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.config import load_config
from gen_service.service.supervisor import run_service

from ..conftest import LLAMA_SERVER_MODEL, RunningServer, llama_cpp_server

pytestmark = [pytest.mark.llamacpp, pytest.mark.anyio]

RUN_BUDGET_S = 480  # measured ~220 s for all five types on 2 shared cores


@pytest.fixture
def anyio_backend() -> str:
    """One loop: a second run on uvloop would double minutes of CPU for nothing new."""
    return "asyncio"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of this test's own, with room for the longest prompt (~1650 tokens) and an
    answer."""
    pytest.importorskip("llama_cpp")
    with llama_cpp_server(tmp_path, n_ctx=4096) as running:
        yield running


@pytest.mark.timeout(RUN_BUDGET_S + 180)
async def test_a_run_on_llama_cpp_server_with_default_schemas_produces_samples(
    server: RunningServer, write_config: Callable[..., Path]
) -> None:
    """A sequential run over the five types commits accepted samples, no batch fails on the
    backend, and the server is still running at the end.

    Whether SmolLM2's sample of a given type passes the checks is luck (measured: all five
    within ~220 s, after one rejection each for two types), so the test asks for at least one
    accepted sample overall and stops the run after RUN_BUDGET_S; a server crash fails it at
    once, since every later request is refused."""
    # One accepted sample per type, batch size 1, no few-shot examples; max_string_chars and
    # grammar_safe stay at their defaults.
    path = write_config(
        kind="openai",
        url=server.url,
        target=1,
        batch_size=1,
        few_shot=0,
        num_predict=900,
        num_ctx=4096,
        num_parallel=1,
        max_retries=2,
        timeout_s=300,
        model_quality=LLAMA_SERVER_MODEL,
        model_volume=LLAMA_SERVER_MODEL,
    )
    cfg = load_config(path)
    with capture_logs() as logs, anyio.move_on_after(RUN_BUDGET_S):
        await run_service(cfg, until_done=True)
    assert server.process.poll() is None, server.log_path.read_text(errors="replace")[-2000:]
    conn = sqlite3.connect(cfg.service.db)
    try:
        accepted = dict(
            conn.execute(
                "SELECT datatype, COUNT(*) FROM samples WHERE status = 'accepted' GROUP BY 1"
            ).fetchall()
        )
        errors = [row[0] for row in conn.execute("SELECT error FROM batches") if row[0]]
    finally:
        conn.close()
    assert sum(accepted.values()) >= 1, errors
    # Each attempt's error reads "attempt N: ErrorType: message": only the model's own
    # failures (too long, unusable JSON) may appear, none of the backend's.
    kinds = {line.split(": ")[1] for e in errors for line in e.splitlines()}
    assert kinds <= {"TruncatedOutput", "InvalidCompletion"}, errors
    events = {e["event"] for e in logs}
    assert "backend.down" not in events
    assert "backend.grammar_crash_suspected" not in events
