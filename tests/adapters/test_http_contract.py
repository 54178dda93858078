"""One table of server misbehaviour, fed to every HTTP backend (Ollama, OpenAI-compatible) by a
real socket server on 127.0.0.1: both must decide the same error class, the same retryable
verdict and the same retry_after. Then the two grammar failures: a refusal that names the
grammar, and a server that dies on a schema-constrained request."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from gen_service.adapters.backend import Backend, ChatRequest, Message
from gen_service.adapters.ollama import OllamaBackend
from gen_service.adapters.openai_compat import OpenAIBackend
from gen_service.errors import (
    BackendDown,
    BackendError,
    BackendRejected,
    BackendUnavailable,
    ModelNotFound,
)

from ..conftest import free_port
from .misbehaving import Act, MisbehavingServer, misbehaving_server

pytestmark = pytest.mark.anyio

MODEL = "qwen3:8b"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
}


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@dataclass(frozen=True)
class Case:
    act: Callable[[], Act]  # built when the test runs: an HTTP date must be fresh
    error: type[BackendError]
    retryable: bool
    retry_after: tuple[float, float] | None  # inclusive range; None: no retry_after


CASES: dict[str, Case] = {
    "408 request timeout": Case(
        lambda: Act.json(408, {"error": "request timed out"}), BackendUnavailable, True, None
    ),
    "429 too many requests": Case(
        lambda: Act.json(429, {"error": "slow down"}, **{"Retry-After": "3"}),
        BackendUnavailable,
        True,
        (3.0, 3.0),
    ),
    "500 runner crash": Case(
        lambda: Act.json(500, {"error": "llama runner process has terminated: signal: killed"}),
        BackendUnavailable,
        True,
        None,
    ),
    "503 busy, Retry-After seconds": Case(
        lambda: Act.json(503, {"error": "server busy"}, **{"Retry-After": "7"}),
        BackendUnavailable,
        True,
        (7.0, 7.0),
    ),
    "503 busy, Retry-After HTTP date": Case(
        lambda: Act.json(503, {"error": "server busy"}, **{"Retry-After": _http_date(120)}),
        BackendUnavailable,
        True,
        (117.0, 121.0),  # the date has whole seconds
    ),
    "connection reset": Case(lambda: Act("reset"), BackendUnavailable, True, None),
    "closed without an answer": Case(lambda: Act("close"), BackendUnavailable, True, None),
    "malformed JSON body": Case(
        lambda: Act("answer", 200, b'{"message": {"content": "trunc'),
        BackendUnavailable,
        True,
        None,
    ),
    "400 bad request": Case(
        lambda: Act.json(400, {"error": "invalid options"}), BackendRejected, False, None
    ),
    "404 unknown model": Case(
        lambda: Act.json(404, {"error": f"model '{MODEL}' not found"}),
        ModelNotFound,
        False,
        None,
    ),
    "grammar refused": Case(
        lambda: Act.json(400, {"error": "failed to parse grammar"}), BackendRejected, False, None
    ),
}

BackendFactory = Callable[[str], Backend]

BACKENDS: dict[str, BackendFactory] = {
    "ollama": lambda url: OllamaBackend(url, connect_timeout_s=2),
    "openai": lambda url: OpenAIBackend(f"{url}/v1", connect_timeout_s=2),
}


@pytest.fixture(params=sorted(BACKENDS))
def make_backend(request: pytest.FixtureRequest) -> BackendFactory:
    """Each HTTP backend kind, built for a base URL."""
    return BACKENDS[request.param]


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    """A fresh misbehaving server."""
    with misbehaving_server() as running:
        yield running


@pytest.fixture
async def backend(
    make_backend: BackendFactory, server: MisbehavingServer
) -> AsyncIterator[Backend]:
    """The backend under test, pointed at the misbehaving server."""
    made = make_backend(server.url)
    try:
        yield made
    finally:
        await made.aclose()


def _chat(schema: dict[str, Any] | None = None) -> ChatRequest:
    return ChatRequest(
        model=MODEL,
        messages=[Message("user", "Answer in JSON.")],
        schema=schema,
        temperature=0.0,
        num_predict=50,
    )


@pytest.mark.parametrize("case", sorted(CASES))
async def test_every_backend_decides_the_same(
    case: str, backend: Backend, server: MisbehavingServer
) -> None:
    """Each misbehaviour gives the same error class, retryable verdict and retry_after from
    every HTTP backend."""
    expected = CASES[case]
    server.script(expected.act())
    with pytest.raises(BackendError) as caught:
        await backend.chat(_chat())
    error = caught.value
    assert type(error) is expected.error, f"{backend.kind}: {error!r}"
    assert error.retryable is expected.retryable
    if expected.retry_after is None:
        assert error.retry_after is None
    else:
        low, high = expected.retry_after
        assert error.retry_after is not None and low <= error.retry_after <= high
    assert server.seen, "the request reached the server"


async def test_a_closed_port_is_backend_down(make_backend: BackendFactory) -> None:
    """Nothing listening is BackendDown (producers pause), from every backend."""
    backend = make_backend(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BackendDown):
            await backend.chat(_chat())
    finally:
        await backend.aclose()


async def test_a_grammar_refusal_names_the_limit_and_the_fix(
    backend: Backend, server: MisbehavingServer
) -> None:
    """A refusal that mentions the grammar is not retried and says which settings fix it."""
    server.script(Act.json(400, {"error": "failed to parse grammar"}))
    with pytest.raises(BackendRejected) as caught:
        await backend.chat(_chat(SCHEMA))
    text = str(caught.value)
    assert "failed to parse grammar" in text
    assert "grammar_safe" in text and "max_string_chars" in text
    assert "2000" in text


async def test_a_server_that_dies_on_a_schema_says_it_probably_crashed_on_the_grammar(
    backend: Backend, server: MisbehavingServer
) -> None:
    """A schema-constrained request whose connection drops, then refused connections: the
    BackendDown says the server probably crashed compiling the grammar, with the fix, and one
    error event is logged."""
    server.script(Act("die"))
    with pytest.raises(BackendUnavailable) as dropped:
        await backend.chat(_chat(SCHEMA))
    assert not isinstance(dropped.value, BackendDown)  # one request's failure, so far
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(BackendDown) as down:
                await backend.chat(_chat(SCHEMA))
            text = str(down.value)
            assert "probably crashed compiling the request's grammar" in text
            assert "grammar_safe" in text and "max_string_chars" in text
        health = await backend.health()
    events = [e for e in logs if e["event"] == "backend.grammar_crash_suspected"]
    assert len(events) == 1 and events[0]["log_level"] == "error"
    assert events[0]["model"] == MODEL
    assert not health.ok and "probably crashed" in health.detail


async def test_a_dropped_request_without_a_schema_is_not_blamed_on_a_grammar(
    backend: Backend, server: MisbehavingServer
) -> None:
    """Without a schema there is no grammar: the refusal afterwards is a plain BackendDown."""
    server.script(Act("die"))
    with pytest.raises(BackendUnavailable):
        await backend.chat(_chat())
    with pytest.raises(BackendDown) as down:
        await backend.chat(_chat())
    assert "grammar" not in str(down.value)
