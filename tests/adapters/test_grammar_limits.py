"""llama.cpp's grammar limit, measured with the installed llama-cpp-python, and the fix:
grammar-safe schemas compile for every data type, and ``python -m llama_cpp.server`` answers
every data type's real request with the default ``max_string_chars`` instead of dying.

Grammars are parsed by llama.cpp itself (``llama_sampler_init_grammar`` on SmolLM2's
vocabulary), after llama-cpp-python's schema converter: the path the server and the embedded
backend take."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gen_service.adapters.backend import ChatRequest, Message, RunnerOptions
from gen_service.adapters.openai_compat import OpenAIBackend
from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.config import DatatypeConfig, ModelConfig
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.schema import GRAMMAR_MAX_STRING_CHARS, batch_schema, grammar_safe
from gen_service.errors import BackendDown, BackendUnavailable, TruncatedOutput

from ..conftest import LLAMA_SERVER_MODEL, PROMPTS, RunningServer, llama_cpp_server

pytestmark = pytest.mark.llamacpp
llama_cpp = pytest.importorskip("llama_cpp")

# What a data type gets when its config says nothing: the defaults under test.
DEFAULT_MAX_STRING_CHARS: int = DatatypeConfig.model_fields["max_string_chars"].default
DEFAULT_GRAMMAR_SAFE: bool = ModelConfig.model_fields["grammar_safe"].default


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    """SmolLM2's vocabulary, which llama.cpp's grammar parser needs (no weights loaded)."""
    from gen_service.adapters.llamacpp import default_model_path

    llm = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
    try:
        yield llm._model.vocab
    finally:
        llm.close()


def _compiles(vocab: Any, schema: dict[str, Any]) -> bool:
    """Whether llama.cpp accepts the grammar llama-cpp-python makes of ``schema``."""
    gbnf = llama_cpp.llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def _text_field(**bounds: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"text": {"type": "string", **bounds}},
        "required": ["text"],
    }


def test_llama_cpp_refuses_a_string_of_more_than_1000_optional_characters(vocab: Any) -> None:
    """The limit grammar_safe stays under: up to 1000 characters beyond minLength compile,
    1001 do not (nested optional groups times the repetition reach MAX_REPETITION_THRESHOLD)."""
    assert _compiles(vocab, _text_field(maxLength=1000))
    assert not _compiles(vocab, _text_field(maxLength=1001))
    assert _compiles(vocab, _text_field(minLength=1, maxLength=1001))
    assert not _compiles(vocab, _text_field(minLength=1, maxLength=1002))
    assert GRAMMAR_MAX_STRING_CHARS <= 0.8 * 1000  # the margin the docstring promises


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_data_type_compiles_at_every_batch_size(vocab: Any, name: str) -> None:
    """With the defaults, each type's batch schema compiles at batch sizes 1..50; without the
    rewrite the same schema does not (the bug: the server then segfaults)."""
    spec = REGISTRY[name]
    assert DEFAULT_GRAMMAR_SAFE
    for size in range(1, 51):
        schema = batch_schema(
            spec.model,
            size,
            max_string_chars=DEFAULT_MAX_STRING_CHARS,
            grammar_safe=DEFAULT_GRAMMAR_SAFE,
        )
        assert _compiles(vocab, schema), f"{name} at batch size {size}"
    raw = batch_schema(spec.model, 1, max_string_chars=DEFAULT_MAX_STRING_CHARS)
    assert not _compiles(vocab, raw)


def test_generated_numbers_stay_in_bounds() -> None:
    """With the enum grammar, SmolLM2's numbers respect the schema's bounds."""
    from gen_service.adapters.llamacpp import default_model_path

    schema = {
        "type": "object",
        "properties": {
            "scores": {
                "type": "array",
                "minItems": 6,
                "maxItems": 6,
                "items": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "level": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        "required": ["scores", "level"],
    }
    grammar = llama_cpp.LlamaGrammar.from_json_schema(
        json.dumps(grammar_safe(schema)), verbose=False
    )
    llm = llama_cpp.Llama(
        model_path=str(default_model_path()), n_ctx=512, n_threads=1, verbose=False
    )
    try:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": "Rate six things from 0 to 100 and a level."}],
            grammar=grammar,
            max_tokens=120,
            temperature=1.0,
            seed=3,
        )
    finally:
        llm.close()
    data = json.loads(out["choices"][0]["message"]["content"])
    assert all(0 <= x <= 1 for x in data["scores"]) and 1 <= data["level"] <= 10


# -- against python -m llama_cpp.server -------------------------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """One loop: the server is module-scoped and each request costs seconds of CPU."""
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of this module's own: the bug crashes it, which must not take the session's
    shared server down with it. 4096 tokens of context hold the longest prompt (~1650)."""
    with llama_cpp_server(tmp_path_factory.mktemp("grammar-server"), n_ctx=4096) as running:
        yield running


def _request(name: str, size: int, *, safe: bool, num_predict: int) -> ChatRequest:
    """The request make_batch sends for ``name`` (prompt, schema, sampling), without few-shot
    examples, built with the config defaults unless ``safe`` is overridden."""
    spec = REGISTRY[name]
    rng = random.Random(7)
    library = load_prompt_library(Path(PROMPTS), [name])
    contexts = spec.sample_contexts(rng, size)
    prompt = library.render(spec, batch_size=size, contexts=contexts, rng=rng, examples=0)
    return ChatRequest(
        model=LLAMA_SERVER_MODEL,
        messages=(Message("system", prompt.system), Message("user", prompt.user)),
        schema=batch_schema(
            spec.model, size, max_string_chars=DEFAULT_MAX_STRING_CHARS, grammar_safe=safe
        ),
        temperature=0.8,
        num_predict=num_predict,
        runner=RunnerOptions(num_ctx=4096),
        seed=rng.randrange(2**31),
    )


@pytest.mark.anyio
@pytest.mark.timeout(600)
@pytest.mark.parametrize("size", [1, 2])
@pytest.mark.parametrize("name", sorted(REGISTRY))
async def test_llama_cpp_server_answers_every_data_type_with_the_defaults(
    server: RunningServer, name: str, size: int
) -> None:
    """The request of every data type, with the default max_string_chars and grammar_safe, is
    answered (a few tokens under its grammar) and the server stays up."""
    async with OpenAIBackend(server.url, request_timeout_s=300) as backend:
        try:
            completion = await backend.chat(
                _request(name, size, safe=DEFAULT_GRAMMAR_SAFE, num_predict=24)
            )
            assert completion.eval_tokens > 0
        except TruncatedOutput as exc:
            assert exc.tokens == 24
            assert exc.content.startswith("{")  # the grammar's first character
    assert server.process.poll() is None, server.log_path.read_text()[-2000:]


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_without_the_rewrite_the_server_dies_and_the_error_names_the_fix(
    tmp_path: Path,
) -> None:
    """The bug, reproduced on a throwaway server: the raw emotional-authenticity schema kills
    llama_cpp.server (SIGSEGV after "failed to parse grammar"); the backend says it probably
    crashed compiling the grammar and names the settings that fix it."""
    with llama_cpp_server(tmp_path, n_ctx=4096) as doomed:
        request = _request("emotional_authenticity", 1, safe=False, num_predict=24)
        async with OpenAIBackend(doomed.url, request_timeout_s=120) as backend:
            with pytest.raises(BackendUnavailable) as dropped:
                await backend.chat(request)
            assert not isinstance(dropped.value, BackendDown)
            # The server may still be going down when its connection breaks: the next
            # request is the one that finds it gone (the service's probe comes later).
            assert doomed.process.wait(timeout=30) != 0
            with pytest.raises(BackendDown) as down:
                await backend.chat(request)
        log = doomed.log_path.read_text(errors="replace")
    assert "failed to parse grammar" in log
    text = str(down.value)
    assert "probably crashed compiling the request's grammar" in text
    assert "grammar_safe" in text and "max_string_chars" in text
