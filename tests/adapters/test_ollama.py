"""The Ollama adapter against the fake Ollama as a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import random

import pytest
import structlog

from gen_service.adapters.backend import ChatRequest, Message, RunnerOptions
from gen_service.adapters.ollama import OllamaBackend
from gen_service.adapters.retrying import RetriesExhausted, RetryPolicy, with_retries
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.parsing import parse_completion
from gen_service.domain.schema import batch_schema
from gen_service.errors import BackendRejected, BackendUnavailable, ModelNotFound, TruncatedOutput
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama, FaultRates

pytestmark = pytest.mark.anyio

SPEC = REGISTRY["personality_traits"]


def request(
    model: str = "qwen3:8b", *, n: int = 3, num_predict: int = 8000, think: bool | None = False
) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=(Message("system", "json only"), Message("user", "write samples")),
        schema=batch_schema(SPEC.model, n),
        temperature=0.8,
        num_predict=num_predict,
        runner=RunnerOptions(num_ctx=8192),
        think=think,
        seed=7,
        keep_alive="5m",
    )


async def test_chat_returns_schema_valid_json(fake_ollama: FakeOllama) -> None:
    """A structured chat yields exactly n schema-valid items and token accounting."""
    backend = OllamaBackend(fake_ollama.url)
    try:
        completion = await backend.chat(request(n=4))
    finally:
        await backend.aclose()
    parsed = parse_completion(completion.content, SPEC.model)
    assert len(parsed.valid) == 4 and not parsed.invalid
    assert completion.eval_tokens > 0
    assert completion.done_reason == "stop"


async def test_think_goes_top_level_only_to_thinking_models(fake_ollama: FakeOllama) -> None:
    """think is sent to a model with the thinking capability and never to one without."""
    backend = OllamaBackend(fake_ollama.url)
    try:
        with_thinking = await backend.chat(request("qwen3:8b", think=True))
        # smollm2 has no thinking capability: sending think would be a 400 from Ollama.
        plain = await backend.chat(request("smollm2:135m", think=True))
    finally:
        await backend.aclose()
    assert with_thinking.thinking
    assert plain.thinking == ""


async def test_missing_model_says_how_to_pull(fake_ollama: FakeOllama) -> None:
    """A model that is not pulled raises ModelNotFound naming `ollama pull`."""
    backend = OllamaBackend(fake_ollama.url)
    try:
        with pytest.raises(ModelNotFound, match="ollama pull qwen3:999b"):
            await backend.chat(request("qwen3:999b", think=None))
    finally:
        await backend.aclose()


async def test_length_is_truncated_output(fake_ollama: FakeOllama) -> None:
    """done_reason length becomes TruncatedOutput, which the retry loop grows num_predict for."""
    backend = OllamaBackend(fake_ollama.url)
    try:
        with pytest.raises(TruncatedOutput):
            await backend.chat(request(num_predict=20))
        attempts = await with_retries(
            lambda n: backend.chat(request(num_predict=n)),
            policy=RetryPolicy(max_retries=8, initial_s=0, num_predict_cap=100_000),
            num_predict=20,
            rng=random.Random(0),
            log=structlog.get_logger(),
        )
    finally:
        await backend.aclose()
    assert attempts.attempts > 1
    assert attempts.num_predict > 20
    assert json.loads(attempts.value.content)


async def test_unreachable_server_is_unavailable() -> None:
    """Connection refused maps to BackendUnavailable with the `ollama serve` hint."""
    backend = OllamaBackend("http://127.0.0.1:9", connect_timeout_s=2)
    try:
        with pytest.raises(BackendUnavailable, match="ollama serve"):
            await backend.chat(request())
        health = await backend.health()
    finally:
        await backend.aclose()
    assert not health.ok and "ollama serve" in health.detail


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("error_500", BackendUnavailable),
        ("busy_503", BackendUnavailable),
        ("drop", BackendUnavailable),
    ],
)
async def test_faults_map_to_retryable_errors(fault: str, error: type[Exception]) -> None:
    """Runner crashes, busy answers and dropped connections are retryable."""
    with FakeOllama(FakeConfig(faults=FaultRates(**{fault: 1.0}))) as server:
        backend = OllamaBackend(server.url)
        try:
            with pytest.raises(error) as info:
                await backend.chat(request())
        finally:
            await backend.aclose()
    assert info.value.retryable  # type: ignore[attr-defined]


async def test_stall_is_cut_by_the_timeout() -> None:
    """A stalled request ends with BackendUnavailable after request_timeout_s."""
    with FakeOllama(FakeConfig(faults=FaultRates(stall=1.0), stall_s=30)) as server:
        backend = OllamaBackend(server.url, request_timeout_s=0.5)
        try:
            with pytest.raises(BackendUnavailable, match="timed out"):
                await backend.chat(request())
        finally:
            await backend.aclose()


async def test_retries_exhausted_after_max_retries() -> None:
    """With every request failing, the retry loop gives up after max_retries + 1 attempts."""
    with FakeOllama(FakeConfig(faults=FaultRates(error_500=1.0))) as server:
        backend = OllamaBackend(server.url)
        try:
            with pytest.raises(RetriesExhausted) as info:
                await with_retries(
                    lambda n: backend.chat(request(num_predict=n)),
                    policy=RetryPolicy(max_retries=2, initial_s=0.001, max_s=0.01),
                    num_predict=8000,
                    rng=random.Random(0),
                    log=structlog.get_logger(),
                )
        finally:
            await backend.aclose()
        assert server.stats().chat_requests == 3
    assert info.value.attempts == 3 and len(info.value.errors) == 3


async def test_bad_request_is_not_retried(fake_ollama: FakeOllama) -> None:
    """A 400 is BackendRejected, which the retry loop re-raises at once."""
    backend = OllamaBackend(fake_ollama.url)
    calls = 0

    async def bad(n: int) -> object:
        nonlocal calls
        calls += 1
        # think sent by hand to a model without thinking: Ollama answers 400.
        return await backend._post_json(
            "/api/chat",
            {
                "model": "smollm2:135m",
                "messages": [{"role": "user", "content": "x"}],
                "think": True,
                "stream": False,
            },
            model="smollm2:135m",
        )

    try:
        with pytest.raises(BackendRejected):
            await with_retries(
                bad,
                policy=RetryPolicy(max_retries=3),
                num_predict=1,
                rng=random.Random(0),
                log=structlog.get_logger(),
            )
    finally:
        await backend.aclose()
    assert calls == 1


async def test_load_unload_and_residency(fake_ollama: FakeOllama) -> None:
    """load makes a model resident (seen in /api/ps); unload removes it."""
    backend = OllamaBackend(fake_ollama.url)
    try:
        await backend.load("qwen3:8b", RunnerOptions(num_ctx=8192), "10m")
        resident = {m.name: m for m in await backend.loaded()}
        assert "qwen3:8b" in resident and resident["qwen3:8b"].gpu_share == 1.0
        await backend.unload("qwen3:8b")
        assert "qwen3:8b" not in {m.name for m in await backend.loaded()}
        big = await backend.describe("qwen3:30b-a3b")
    finally:
        await backend.aclose()
    assert "thinking" in big.capabilities and big.size_bytes > 12 * 2**30


async def test_pull_streams_progress(fake_ollama: FakeOllama) -> None:
    """models pull streams progress events and ends with success; unknown tags raise."""
    backend = OllamaBackend(fake_ollama.url)
    try:
        events = [e async for e in backend.pull("qwen3:8b")]
        with pytest.raises(BackendRejected, match="pulling"):
            _ = [e async for e in backend.pull("nope:1b")]
    finally:
        await backend.aclose()
    assert events[-1]["status"] == "success"
    assert any("completed" in e for e in events)


async def test_only_a_server_that_says_so_is_a_test_double() -> None:
    """Ollama's own /api/version answers {"version"} alone: not a test double. The fake adds
    "test_double", so the service can mark what it generates as test data."""
    from .misbehaving import Act, misbehaving_server

    with misbehaving_server() as server:
        server.script(Act.json(200, {"version": "0.11.4"}))
        backend = OllamaBackend(server.url)
        try:
            real = await backend.health()
        finally:
            await backend.aclose()
    with FakeOllama(FakeConfig(time_scale=0.0)) as fake:
        backend = OllamaBackend(fake.url)
        try:
            fake_health = await backend.health()
        finally:
            await backend.aclose()
    assert real.ok and real.version == "0.11.4" and not real.test_double
    assert fake_health.ok and fake_health.test_double
