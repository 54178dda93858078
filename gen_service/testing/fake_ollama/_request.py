"""Reading requests: the validated chat request, keep_alive durations and the HTTP errors.

``HttpError`` is answered as ``{"error": message}`` with its status; ``Abort`` ends an
exchange by closing the connection. Both are raised anywhere below the handler and caught in
its dispatcher.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gen_service.testing.fake_ollama._config import DEFAULT_NUM_CTX, FakeModel

MSG_BUSY = "server busy, please try again.  maximum pending requests exceeded"
MSG_RUNNER_CRASH = "llama runner process has terminated: exit status 2"
MSG_PULL_UNKNOWN = "pull model manifest: file does not exist"

_DEFAULT_KEEP_ALIVE_S = 300.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_keep_alive(value: object) -> float | None:
    """Seconds a model stays resident after a request; ``None`` is forever.

    Numbers are seconds; strings are Go durations ("5m", "1h30m") or numbers; negative is forever.
    """
    if value is None:
        return _DEFAULT_KEEP_ALIVE_S
    if isinstance(value, bool):
        raise ValueError(f"invalid keep_alive {value!r}")
    if isinstance(value, int | float):
        return None if value < 0 else float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid keep_alive {value!r}")
    text = value.strip()
    if not text:
        return _DEFAULT_KEEP_ALIVE_S
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return None if number < 0 else number
    negative = text.startswith("-")
    body = text.lstrip("+-")
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        raise ValueError(f'time: invalid duration "{value}"')
    return None if negative else total


class HttpError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Abort(Exception):
    """End the exchange by closing the connection without (further) bytes."""


@dataclass(frozen=True)
class ChatRequest:
    """A validated ``/api/chat`` request."""

    model: FakeModel
    name: str  # as the client wrote it; echoed back like Ollama does
    messages: list[Any]
    fmt: object
    think: bool
    stream: bool
    keep_alive: float | None
    num_ctx: int
    num_gpu: int | None
    num_predict: int | None


def model_named(
    body: Mapping[str, Any], find: Callable[[str], FakeModel | None]
) -> tuple[str, FakeModel | None]:
    """The model name a request body gives (``model``, or the older ``name``) and its model."""
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        raise HttpError(400, "model is required")
    return name, find(name)


def parse_chat(body: Mapping[str, Any], find: Callable[[str], FakeModel | None]) -> ChatRequest:
    """Validate an ``/api/chat`` body as Ollama does, raising ``HttpError`` where it would."""
    name, model = model_named(body, find)
    if model is None:
        raise HttpError(404, f'model "{name}" not found, try pulling it first')
    messages = body.get("messages") or []
    if not isinstance(messages, list):
        raise HttpError(400, "messages must be a list")
    fmt = body.get("format")
    if fmt == "":
        fmt = None
    if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
        raise HttpError(400, 'invalid format: expected "json" or a JSON schema')
    think_value = body.get("think")
    if think_value is not None and not model.thinks:
        raise HttpError(400, f'"{name}" does not support thinking')
    think = think_value is True or think_value in ("high", "medium", "low")
    try:
        keep_alive = parse_keep_alive(body.get("keep_alive"))
    except ValueError as exc:
        raise HttpError(400, str(exc)) from None
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise HttpError(400, "options must be an object")

    def int_option(key: str) -> int | None:
        value = options.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise HttpError(400, f'option "{key}" must be of type integer')
        return int(value)

    num_ctx = int_option("num_ctx") or DEFAULT_NUM_CTX
    num_predict = int_option("num_predict")
    if num_predict is not None and num_predict < 0:
        num_predict = None  # -1: no limit; -2: fill the context
    return ChatRequest(
        model=model,
        name=name,
        messages=messages,
        fmt=fmt,
        think=think and model.thinks,
        stream=body.get("stream") is not False,
        keep_alive=keep_alive,
        num_ctx=max(1, num_ctx),
        num_gpu=int_option("num_gpu"),
        num_predict=num_predict,
    )
