"""A reply larger than its num_predict can explain is read only up to a limit and treated as
a truncated answer: its complete items are kept, the rest never held in memory."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gen_service.adapters._completions import partial_content, reply_limit
from gen_service.adapters.backend import ChatRequest, Message
from gen_service.adapters.ollama import OllamaBackend
from gen_service.adapters.openai_compat import OpenAIBackend
from gen_service.domain.parsing import complete_items
from gen_service.errors import TruncatedOutput

from .misbehaving import Act, MisbehavingServer

pytestmark = pytest.mark.anyio

NUM_PREDICT = 200
ITEMS = [{"line": f"item {i}"} for i in range(3)]


def runaway_content() -> str:
    """Three complete items, then an item whose text never ends (megabytes of it)."""
    head = json.dumps({"samples": ITEMS})[:-2]  # drop the closing ]}
    return head + ', {"line": "' + "la " * 400_000


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    s = MisbehavingServer()
    yield s
    s.close()


def request() -> ChatRequest:
    return ChatRequest(
        model="m", messages=(Message("user", "write"),), schema={"type": "object"},
        temperature=0.5, num_predict=NUM_PREDICT,
    )  # fmt: skip


async def test_ollama_reply_beyond_the_limit_is_a_truncated_answer(
    server: MisbehavingServer,
) -> None:
    """Ollama answering megabytes for 200 tokens: cut at the limit, TruncatedOutput with the
    complete items in its content."""
    body = {"message": {"role": "assistant", "content": runaway_content()}, "done": True}
    server.script(Act.json(200, body))
    backend = OllamaBackend(server.url)
    try:
        with pytest.raises(TruncatedOutput) as caught:
            await backend.chat(request())
    finally:
        await backend.aclose()
    assert len(caught.value.content) < reply_limit(NUM_PREDICT)
    assert complete_items(caught.value.content) == ITEMS
    assert "was cut there" in str(caught.value)


async def test_openai_reply_beyond_the_limit_is_a_truncated_answer(
    server: MisbehavingServer,
) -> None:
    """The same for an OpenAI-compatible server."""
    body = {"choices": [{"message": {"content": runaway_content()}, "finish_reason": "stop"}]}
    server.script(Act.json(200, body))
    backend = OpenAIBackend(f"{server.url}/v1", response_format="json_object")
    try:
        with pytest.raises(TruncatedOutput) as caught:
            await backend.chat(request())
    finally:
        await backend.aclose()
    assert complete_items(caught.value.content) == ITEMS


async def test_a_reply_within_the_limit_is_read_whole(server: MisbehavingServer) -> None:
    """An ordinary answer is not affected."""
    content = json.dumps({"samples": ITEMS})
    body = {"message": {"content": content}, "done_reason": "stop", "eval_count": 30}
    server.script(Act.json(200, body))
    backend = OllamaBackend(server.url)
    try:
        completion = await backend.chat(request())
    finally:
        await backend.aclose()
    assert completion.content == content


def test_partial_content_decodes_what_arrived() -> None:
    """The content string is decoded as far as the cut allows; a split escape is dropped."""
    whole = json.dumps({"message": {"content": "abcé" + "d"}}, ensure_ascii=True).encode()
    cut_at = whole.index(b"\\u00e9") + 4  # inside the escape
    assert partial_content(whole[:cut_at]) == "abc"
    assert partial_content(whole[: whole.index(b'd"')]) == "abcé"
    assert partial_content(whole) == "abcéd"
    assert partial_content(b'{"message": {"role": "assistant"') == ""
