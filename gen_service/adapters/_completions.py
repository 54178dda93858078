"""Chat messages and completions in the shapes the backends share.

llama-cpp-python's ``create_chat_completion`` (the embedded backend) returns what an
OpenAI-compatible server's ``/v1/chat/completions`` returns, so one function reads both:
``choices[0].message`` (content, and the thinking that vLLM's reasoning parsers split off),
``usage`` and ``finish_reason``, where "length" is a :class:`TruncatedOutput`. Every backend
sends its messages as ``[{"role", "content"}]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from gen_service.adapters.backend import Completion, Message
from gen_service.errors import BackendUnavailable, TruncatedOutput


def chat_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """The request's messages as every chat API takes them."""
    return [{"role": m.role, "content": m.content} for m in messages]


def truncated_output(
    model: str, *, stopped_at: str, tokens: int, content: str, where: str = "", note: str = ""
) -> TruncatedOutput:
    """The model hit its token budget (``stopped_at``, e.g. "num_predict=600") mid-answer."""
    return TruncatedOutput(
        f"model {model!r}{where} stopped at {stopped_at} after {tokens} tokens{note}; retry "
        "with a larger num_predict",
        content=content,
        tokens=tokens,
    )


def openai_completion(
    data: dict[str, Any],
    *,
    model: str,
    stopped_at: str,
    where: str = "",
    total_s: float,
    load_s: float = 0.0,
    prompt_eval_s: float = 0.0,
    eval_s: float = 0.0,
) -> Completion:
    """An OpenAI-shaped chat completion as a :class:`Completion`; raises TruncatedOutput on
    ``finish_reason`` "length" (``stopped_at`` names the budget it hit) and
    BackendUnavailable when there is no choice to read. ``where`` (" at URL") places it."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BackendUnavailable(f"the chat completion of model {model!r}{where} has no choices")
    choice = choices[0]
    message = as_mapping(choice.get("message"))
    content = str(message.get("content") or "")
    # vLLM's reasoning parsers put the thinking apart: reasoning_content, newer "reasoning".
    thinking = str(message.get("reasoning_content") or message.get("reasoning") or "")
    usage = as_mapping(data.get("usage"))
    eval_tokens = int(usage.get("completion_tokens") or 0)
    reason = str(choice.get("finish_reason") or "")
    if reason == "length":
        raise truncated_output(
            model, stopped_at=stopped_at, tokens=eval_tokens, content=content, where=where
        )
    return Completion(
        content=content,
        done_reason=reason,
        thinking=thinking,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        eval_tokens=eval_tokens,
        total_s=total_s,
        load_s=load_s,
        prompt_eval_s=prompt_eval_s,
        eval_s=eval_s,
    )


def as_mapping(value: object) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (servers omit or null fields)."""
    return value if isinstance(value, dict) else {}


# Bytes one output token may take in an answer's JSON body: a token is a few characters, a
# character at most 6 once JSON-escaped (\uXXXX), and content and thinking both count.
BYTES_PER_TOKEN = 32
ENVELOPE_BYTES = 64 * 1024  # the answer's fields beyond the generated text


def reply_limit(num_predict: int) -> int:
    """The most bytes an answer of ``num_predict`` tokens can honestly take: more is cut."""
    return max(num_predict, 1) * BYTES_PER_TOKEN + ENVELOPE_BYTES


_CONTENT_KEY = re.compile(rb'"content"\s*:\s*"')


def partial_content(body: bytes) -> str:
    """The generated text in a body that was cut off: the first ``"content": "..."`` string,
    decoded as far as it goes (an escape the cut split is dropped)."""
    match = _CONTENT_KEY.search(body)
    if match is None:
        return ""
    rest = body[match.end() :].decode("utf-8", errors="ignore")
    decoder = json.JSONDecoder()
    try:
        value, _ = decoder.raw_decode('"' + rest)
        return str(value)
    except json.JSONDecodeError:
        pass
    for trim in range(7):  # the cut may split an escape (\uXXXX is six characters)
        try:
            return str(json.loads('"' + rest[: len(rest) - trim] + '"'))
        except json.JSONDecodeError:
            continue
    return ""


def cut_off(model: str, num_predict: int, body: bytes, where: str) -> TruncatedOutput:
    """A reply cut at its byte limit, as a truncated answer: its complete items are kept."""
    return TruncatedOutput(
        f"{where} answered more than {reply_limit(num_predict):,} bytes for model {model!r} "
        f"at num_predict={num_predict}; the reply was cut there and read as truncated",
        content=partial_content(body),
        tokens=num_predict,
    )
