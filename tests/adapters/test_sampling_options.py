"""Sampling options reach each HTTP backend under the name that server reads."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gen_service.adapters.backend import ChatRequest, Message
from gen_service.adapters.ollama import OllamaBackend
from gen_service.adapters.openai_compat import OpenAIBackend

from .misbehaving import Act, MisbehavingServer

pytestmark = pytest.mark.anyio

OLLAMA_ANSWER = {"message": {"content": "{}"}, "done_reason": "stop", "eval_count": 1}
OPENAI_ANSWER = {
    "choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
}


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    s = MisbehavingServer()
    yield s
    s.close()


def request(penalty: float | None) -> ChatRequest:
    return ChatRequest(
        model="m", messages=(Message("user", "hi"),), schema=None, temperature=0.5,
        num_predict=10, repeat_penalty=penalty,
    )  # fmt: skip


async def test_ollama_sends_repeat_penalty_in_options_only_when_set(
    server: MisbehavingServer,
) -> None:
    """Ollama gets options.repeat_penalty when the data type sets one, nothing otherwise."""
    server.script(Act.json(200, OLLAMA_ANSWER))
    backend = OllamaBackend(server.url)
    try:
        await backend.chat(request(1.15))
        await backend.chat(request(None))
    finally:
        await backend.aclose()
    bodies = [json.loads(s.body) for s in server.seen if s.path == "/api/chat"]
    assert bodies[0]["options"]["repeat_penalty"] == 1.15
    assert "repeat_penalty" not in bodies[1]["options"]


async def test_openai_sends_both_names_of_the_penalty(server: MisbehavingServer) -> None:
    """vLLM reads repetition_penalty, llama.cpp's servers repeat_penalty: both are sent."""
    server.script(Act.json(200, OPENAI_ANSWER))
    backend = OpenAIBackend(f"{server.url}/v1")
    try:
        await backend.chat(request(1.2))
        await backend.chat(request(None))
    finally:
        await backend.aclose()
    bodies = [json.loads(s.body) for s in server.seen if s.path.endswith("/chat/completions")]
    assert bodies[0]["repetition_penalty"] == 1.2 and bodies[0]["repeat_penalty"] == 1.2
    assert "repetition_penalty" not in bodies[1] and "repeat_penalty" not in bodies[1]
