"""OpenAIBackend against real servers: llama-cpp-python's ``python -m llama_cpp.server`` running
SmolLM2, and a scripted stdlib HTTP server for the answers a healthy llama.cpp never gives
(401, 503, vLLM's error shapes, dropped connections)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest

from gen_service.adapters.backend import ChatRequest, LoadedModel, Message
from gen_service.adapters.openai_compat import OpenAIBackend
from gen_service.errors import (
    BackendRejected,
    BackendUnavailable,
    ModelNotFound,
    TruncatedOutput,
)

from ..conftest import free_port

MODEL = "smollm2:135m"

SAMPLES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "samples": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 20},
                    "score": {"type": "number", "minimum": 0, "maximum": 1},
                },
                "required": ["name", "score"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["samples"],
    "additionalProperties": False,
}
TINY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _request(
    schema: dict[str, Any] | None = None,
    *,
    num_predict: int = 120,
    model: str = MODEL,
    prompt: str = "Invent two characters and give each a score between 0 and 1. Answer in JSON.",
    think: bool | None = None,
) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=[Message("user", prompt)],
        schema=schema,
        temperature=0.0,
        num_predict=num_predict,
        seed=7,
        think=think,
    )


@pytest.mark.llamacpp
@pytest.mark.anyio
async def test_chat_returns_json_that_follows_the_schema(llama_server: str) -> None:
    """A schema-constrained chat on llama_cpp.server returns JSON in the schema's shape."""
    async with OpenAIBackend(llama_server) as backend:
        completion = await backend.chat(_request(SAMPLES_SCHEMA, num_predict=200))
    data = json.loads(completion.content)
    assert set(data) == {"samples"}
    assert len(data["samples"]) == 2
    for sample in data["samples"]:
        assert set(sample) == {"name", "score"}
        assert isinstance(sample["name"], str)
        # llama-cpp-python's grammar converter ignores minimum/maximum: only the type holds.
        assert isinstance(sample["score"], int | float)
    assert completion.done_reason == "stop"
    assert completion.prompt_tokens > 0
    assert completion.eval_tokens > 0
    assert completion.total_s > 0


@pytest.mark.llamacpp
@pytest.mark.anyio
async def test_auto_mode_falls_back_to_json_object_once_and_remembers(llama_server: str) -> None:
    """llama_cpp.server refuses json_schema; auto mode retries with json_object and keeps it,
    also when two first requests are refused at once."""
    contents: list[str] = []

    async def one(prompt: str) -> None:
        completion = await backend.chat(_request(TINY_SCHEMA, num_predict=20, prompt=prompt))
        contents.append(completion.content)

    async with OpenAIBackend(llama_server) as backend:
        [before] = backend.endpoint_stats()
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "Are you ok?")
            tg.start_soon(one, "Is it ok?")
        [after_first] = backend.endpoint_stats()
        await one("Is all ok?")
        [after_second] = backend.endpoint_stats()
    assert before.response_format == ""
    assert [isinstance(json.loads(c)["ok"], bool) for c in contents] == [True] * 3
    assert after_first.response_format == "json_object"
    assert after_first.requests_sent == 4  # each: json_schema refused, json_object answered
    assert after_second.requests_sent == 5  # remembered: no second detection
    assert after_second.in_flight == 0


@pytest.mark.llamacpp
@pytest.mark.anyio
async def test_forced_json_schema_mode_is_rejected_by_llama_cpp_server(llama_server: str) -> None:
    """With response_format="json_schema" forced, the server's refusal surfaces as rejected."""
    async with OpenAIBackend(llama_server, response_format="json_schema") as backend:
        with pytest.raises(BackendRejected) as caught:
            await backend.chat(_request(TINY_SCHEMA, num_predict=20))
    # llama_cpp.server wraps the pydantic validation error in an HTTP 500.
    assert caught.value.status == 500
    assert not caught.value.retryable
    assert "response_format" in str(caught.value)


@pytest.mark.llamacpp
@pytest.mark.anyio
async def test_length_finish_raises_truncated_output(llama_server: str) -> None:
    """finish_reason "length" becomes TruncatedOutput carrying the partial text and tokens."""
    async with OpenAIBackend(llama_server) as backend:
        with pytest.raises(TruncatedOutput) as caught:
            await backend.chat(_request(num_predict=4, prompt="Tell a long story."))
    assert caught.value.tokens == 4
    assert caught.value.content
    assert caught.value.retryable


@pytest.mark.llamacpp
@pytest.mark.anyio
async def test_health_falls_back_to_models_without_health_route(llama_server: str) -> None:
    """llama_cpp.server has no /health; health() proves it up through /v1/models."""
    async with OpenAIBackend(llama_server) as backend:
        health = await backend.health()
    assert health.ok
    assert health.version == ""  # no /version either
    assert "no /health" in health.detail


@pytest.mark.anyio
async def test_health_of_a_closed_port_is_not_ok_and_does_not_raise() -> None:
    """An unreachable server gives ok=False with a hint, never an exception."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    async with OpenAIBackend(url, connect_timeout_s=2) as backend:
        health = await backend.health()
    assert not health.ok
    assert f"is the server running at {url}?" in health.detail


@pytest.mark.llamacpp
@pytest.mark.anyio
async def test_models_come_from_the_model_list(llama_server: str) -> None:
    """describe/load/loaded use /v1/models; an unlisted name is ModelNotFound there."""
    async with OpenAIBackend(llama_server) as backend:
        [info] = await backend.list_models()
        assert info.name == MODEL
        assert info.size_bytes == 0
        assert info.context_length is None  # only vLLM reports max_model_len
        assert await backend.load(MODEL, _request().runner, "5m") == 0.0
        assert await backend.loaded() == [LoadedModel(MODEL, size_bytes=0, vram_bytes=0)]
        with pytest.raises(ModelNotFound) as caught:
            await backend.describe("no-such-model")
        assert MODEL in str(caught.value)
        with pytest.raises(ModelNotFound):
            await backend.load("no-such-model", _request().runner, "5m")
        await backend.unload(MODEL)


@pytest.mark.llamacpp
@pytest.mark.anyio
async def test_llama_cpp_server_answers_chats_for_any_model_name(llama_server: str) -> None:
    """The server serves an unknown model name with its default model, so chat cannot detect
    it: describe/load are where ModelNotFound comes from."""
    async with OpenAIBackend(llama_server) as backend:
        with pytest.raises(TruncatedOutput):
            await backend.chat(_request(num_predict=2, model="no-such-model"))


@pytest.mark.llamacpp
@pytest.mark.anyio
async def test_requests_spread_over_endpoints_by_least_in_flight(llama_server: str) -> None:
    """Four concurrent chats over two endpoints of one model go two to each."""
    other = llama_server.replace("127.0.0.1", "localhost")
    async with OpenAIBackend(llama_server, endpoints={MODEL: [llama_server, other]}) as backend:

        async def one() -> None:
            with contextlib.suppress(TruncatedOutput):
                await backend.chat(_request(num_predict=2, prompt="Say hello."))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(one)
        stats = {s.url: s for s in backend.endpoint_stats()}
    assert stats[llama_server].requests_sent == 2
    assert stats[other].requests_sent == 2
    assert stats[llama_server].in_flight == stats[other].in_flight == 0


# -- a scripted stdlib server for the answers llama.cpp does not give -------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ScriptedServer:
    """Answers each path with its scripted replies in order (the last one repeats) and records
    every request; unscripted paths get FastAPI's 404."""

    def __init__(self) -> None:
        self.replies: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.url = ""

    def script(self, path: str, *replies: Reply) -> None:
        self.replies[path] = list(replies)

    def next_reply(self, path: str) -> Reply:
        queue = self.replies.get(path)
        if not queue:
            return Reply(404, {"detail": "Not Found"})
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    state = ScriptedServer()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            state.seen.append(
                Seen(self.command, self.path, dict(self.headers), json.loads(raw) if raw else None)
            )
            reply = state.next_reply(self.path)
            if reply.drop:
                self.close_connection = True
                return
            payload = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _ok(content: str = '{"ok": true}', **message: str) -> Reply:
    return Reply(
        200,
        {
            "choices": [
                {
                    "message": {"role": "assistant", "content": content, **message},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5},
        },
    )


@pytest.mark.anyio
async def test_api_key_is_sent_as_bearer_and_kept_out_of_errors(scripted: ScriptedServer) -> None:
    """The key goes in Authorization; a 401 says what to do and never shows the key."""
    key = "sk-test-9f8e7d6c5b4a"
    scripted.script(
        "/v1/chat/completions",
        Reply(401, {"error": {"message": f"Incorrect API key provided: {key}"}}),
    )
    async with OpenAIBackend(scripted.url, api_key=key) as backend:
        with pytest.raises(BackendRejected) as caught:
            await backend.chat(_request(TINY_SCHEMA))
        assert key not in repr(backend)
    assert scripted.seen[0].headers["Authorization"] == f"Bearer {key}"
    assert caught.value.status == 401
    assert not caught.value.retryable
    assert "backend.api_key_env" in str(caught.value)
    assert key not in str(caught.value)
    assert key not in repr(caught.value)


@pytest.mark.anyio
async def test_busy_server_is_unavailable_with_retry_after(scripted: ScriptedServer) -> None:
    """503 with Retry-After becomes a retryable BackendUnavailable carrying the delay."""
    scripted.script(
        "/v1/chat/completions",
        Reply(503, {"error": {"message": "server busy"}}, headers={"Retry-After": "7"}),
    )
    async with OpenAIBackend(scripted.url) as backend:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.chat(_request(TINY_SCHEMA))
    assert caught.value.retryable
    assert caught.value.status == 503
    assert caught.value.retry_after == 7.0
    assert "server busy" in str(caught.value)


@pytest.mark.anyio
async def test_dropped_connection_is_unavailable(scripted: ScriptedServer) -> None:
    """A server that hangs up without answering gives a retryable BackendUnavailable."""
    scripted.script("/v1/chat/completions", Reply(drop=True))
    async with OpenAIBackend(scripted.url) as backend:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.chat(_request(TINY_SCHEMA))
    assert "dropped the connection" in str(caught.value)


@pytest.mark.anyio
async def test_vllm_unknown_model_is_model_not_found(scripted: ScriptedServer) -> None:
    """vLLM's 404 for an unknown model is ModelNotFound; a bare route 404 asks for /v1."""
    scripted.script(
        "/v1/chat/completions",
        Reply(404, {"error": {"message": "The model `qwen9` does not exist.", "code": 404}}),
    )
    async with OpenAIBackend(scripted.url) as backend:
        with pytest.raises(ModelNotFound) as caught:
            await backend.chat(_request(TINY_SCHEMA, model="qwen9"))
    assert caught.value.model == "qwen9"
    without_v1 = scripted.url.removesuffix("/v1")
    async with OpenAIBackend(without_v1) as backend:
        with pytest.raises(BackendRejected) as wrong_url:
            await backend.chat(_request(TINY_SCHEMA))
    assert not isinstance(wrong_url.value, ModelNotFound)
    assert "/v1" in str(wrong_url.value)


@pytest.mark.anyio
async def test_json_schema_is_sent_first_and_kept_when_accepted(scripted: ScriptedServer) -> None:
    """A vLLM-like server gets response_format json_schema with the schema, strict."""
    scripted.script("/v1/chat/completions", _ok(reasoning_content="short thought"))
    async with OpenAIBackend(scripted.url) as backend:
        completion = await backend.chat(_request(TINY_SCHEMA))
        [stats] = backend.endpoint_stats()
    body = scripted.seen[0].body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "batch", "schema": TINY_SCHEMA, "strict": True},
    }
    assert body["max_tokens"] == 120
    assert body["seed"] == 7
    assert body["stream"] is False
    assert "chat_template_kwargs" not in body  # think=None sends nothing
    assert stats.response_format == "json_schema"
    assert completion.thinking == "short thought"
    assert (completion.prompt_tokens, completion.eval_tokens) == (11, 5)


@pytest.mark.anyio
async def test_refused_chat_template_kwargs_are_dropped_and_remembered(
    scripted: ScriptedServer,
) -> None:
    """think goes to chat_template_kwargs; a server that refuses the field never gets it again."""
    scripted.script(
        "/v1/chat/completions",
        Reply(400, {"error": {"message": "Unrecognized field: chat_template_kwargs"}}),
        _ok(),
    )
    async with OpenAIBackend(scripted.url) as backend:
        await backend.chat(_request(TINY_SCHEMA, think=False))
        await backend.chat(_request(TINY_SCHEMA, think=False))
        [stats] = backend.endpoint_stats()
    bodies = [seen.body for seen in scripted.seen]
    assert bodies[0]["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in bodies[1]
    assert "chat_template_kwargs" not in bodies[2]
    assert stats.template_kwargs is False
    assert stats.requests_sent == 3


@pytest.mark.anyio
async def test_failed_endpoint_is_passed_over_while_another_answers(
    scripted: ScriptedServer,
) -> None:
    """After an endpoint fails, the next requests go to the healthy one."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    scripted.script("/v1/chat/completions", _ok())
    routes = {MODEL: [dead, scripted.url]}
    async with OpenAIBackend(scripted.url, endpoints=routes, connect_timeout_s=2) as backend:
        with pytest.raises(BackendUnavailable):
            await backend.chat(_request(TINY_SCHEMA))
        await backend.chat(_request(TINY_SCHEMA))
        await backend.chat(_request(TINY_SCHEMA))
        stats = {s.url: s for s in backend.endpoint_stats()}
    assert stats[dead].requests_sent == 1
    assert stats[scripted.url].requests_sent == 2


@pytest.mark.anyio
async def test_health_reads_health_and_version_routes(scripted: ScriptedServer) -> None:
    """A vLLM-like server is healthy via /health and reports /version."""
    scripted.script("/health", Reply(200, {}))
    scripted.script("/version", Reply(200, {"version": "0.9.2"}))
    async with OpenAIBackend(scripted.url) as backend:
        health = await backend.health()
    assert health.ok
    assert health.version == "0.9.2"
