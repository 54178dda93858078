"""The Backend contract, one set of tests for all three backends.

- ollama: OllamaBackend against the fake Ollama on 127.0.0.1;
- openai: OpenAIBackend against a real ``python -m llama_cpp.server`` serving SmolLM2;
- llamacpp: LlamaCppBackend running SmolLM2 in-process.

Each backend is set up once for the module (a llama.cpp model load or server start costs
seconds), so the tests of one backend run in the order written and share its state; the last
one closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

# tests/adapters is on sys.path under pytest's default (prepend) import mode.
from gen_service.adapters.backend import Backend, ChatRequest, Completion, Message, RunnerOptions
from gen_service.adapters.llamacpp import DEFAULT_MODEL_NAME
from gen_service.adapters.ollama import OllamaBackend
from gen_service.adapters.openai_compat import OpenAIBackend
from gen_service.domain.parsing import extract_json
from gen_service.errors import ModelNotFound, TruncatedOutput
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama

pytestmark = pytest.mark.anyio

BackendCase = tuple[Backend, str, frozenset[str]]  # backend, a model it serves, its capabilities

RUNNER = RunnerOptions(num_ctx=2048)  # the same on every call, so llama.cpp never reloads
MOODS = ("calm", "angry")
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "samples": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 40},
                    "mood": {"type": "string", "enum": list(MOODS)},
                },
                "required": ["name", "mood"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["samples"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """One event loop for the module: the backends are module-scoped, and llama.cpp is slow
    enough that running it twice (asyncio and uvloop) would double the module's time."""
    return "asyncio"


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("ollama"),
        pytest.param("openai", marks=pytest.mark.llamacpp),
        pytest.param("llamacpp", marks=pytest.mark.llamacpp),
    ],
)
async def backend_case(request: pytest.FixtureRequest) -> AsyncIterator[BackendCase]:
    """(backend, model_name, capabilities describe() must report) for each backend kind."""
    kind: str = request.param
    if kind == "ollama":
        with FakeOllama(FakeConfig(time_scale=0.0, seed=3)) as fake:
            backend: Backend = OllamaBackend(fake.url)
            try:
                yield backend, "qwen3:8b", frozenset({"completion", "thinking"})
            finally:
                await backend.aclose()
        return
    pytest.importorskip("llama_cpp")
    if kind == "openai":
        backend = OpenAIBackend(request.getfixturevalue("llama_server"))
    else:
        from gen_service.adapters.llamacpp import LlamaCppBackend

        # One thread, like the server above by default on 2 cores: llama.cpp's threads
        # busy-wait on each other, so all cores on a machine where anything else runs (another
        # test, the service) slows generation 10-30x; one thread degrades gently.
        backend = LlamaCppBackend(n_threads=1)
    try:
        yield backend, DEFAULT_MODEL_NAME, frozenset({"completion"})
    finally:
        await backend.aclose()


def _chat(model: str, num_predict: int) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=[
            Message("system", "You write JSON for a game. Answer with JSON only."),
            Message(
                "user",
                'Invent two game characters. Give each a short "name" and a "mood", which is '
                '"calm" or "angry". Answer as {"samples": [...]}.',
            ),
        ],
        schema=SCHEMA,
        temperature=0.2,
        num_predict=num_predict,
        runner=RUNNER,
        seed=7,
    )


async def test_health_is_ok_with_a_version(backend_case: BackendCase) -> None:
    """A running backend reports ok and a version string (possibly empty)."""
    backend, _, _ = backend_case
    health = await backend.health()
    assert health.ok, health.detail
    assert isinstance(health.version, str)


async def test_list_models_includes_the_model(backend_case: BackendCase) -> None:
    """The model the case serves is among the listed models."""
    backend, model, _ = backend_case
    assert model in [info.name for info in await backend.list_models()]


async def test_describe_names_the_model_and_its_capabilities(backend_case: BackendCase) -> None:
    """describe() returns a ModelInfo for that name with at least the expected capabilities."""
    backend, model, caps = backend_case
    info = await backend.describe(model)
    assert info.name == model
    assert caps <= info.capabilities
    assert info.size_bytes >= 0


async def test_describe_of_an_unknown_model_raises_model_not_found(
    backend_case: BackendCase,
) -> None:
    """A model the backend does not serve is ModelNotFound, naming the model."""
    backend, _, _ = backend_case
    with pytest.raises(ModelNotFound) as caught:
        await backend.describe("no-such-model:1b")
    assert caught.value.model == "no-such-model:1b"


async def test_load_makes_the_model_resident(backend_case: BackendCase) -> None:
    """load() returns its seconds (a float >= 0) and the model is then listed as loaded."""
    backend, model, _ = backend_case
    seconds = await backend.load(model, RUNNER, "5m")
    assert isinstance(seconds, float)
    assert seconds >= 0
    assert model in [m.name for m in await backend.loaded()]


async def test_chat_returns_json_in_the_schema(backend_case: BackendCase) -> None:
    """A schema-constrained chat returns exactly two {name, mood} samples, with accounting."""
    backend, model, _ = backend_case
    completion = await backend.chat(_chat(model, num_predict=300))
    assert isinstance(completion, Completion)
    data = extract_json(completion.content)
    assert isinstance(data, dict) and set(data) == {"samples"}, completion.content
    assert len(data["samples"]) == 2
    for sample in data["samples"]:
        assert set(sample) == {"name", "mood"}
        assert isinstance(sample["name"], str) and len(sample["name"]) <= 40
        assert sample["mood"] in MOODS
    assert completion.eval_tokens > 0
    assert completion.total_s >= 0


async def test_too_small_num_predict_raises_truncated_output(backend_case: BackendCase) -> None:
    """Stopping at num_predict before the JSON is complete is TruncatedOutput (retryable)."""
    backend, model, _ = backend_case
    with pytest.raises(TruncatedOutput) as caught:
        await backend.chat(_chat(model, num_predict=5))
    assert caught.value.retryable


async def test_unload_does_not_raise(backend_case: BackendCase) -> None:
    """unload() of a loaded model returns quietly."""
    backend, model, _ = backend_case
    await backend.unload(model)


async def test_aclose_can_be_called_twice(backend_case: BackendCase) -> None:
    """aclose() releases the backend and a second call (the fixture makes a third) is safe."""
    backend, _, _ = backend_case
    await backend.aclose()
    await backend.aclose()
