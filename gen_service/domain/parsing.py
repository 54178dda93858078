"""Turning a model's completion text into validated samples (pure).

Models wrap JSON in markdown fences, prepend ``<think>`` blocks, answer with a bare array
instead of ``{"samples": [...]}``, or get one item wrong. Each item is validated on its own: a
bad item costs that item, not the batch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from gen_service.domain.schema import BATCH_KEY
from gen_service.errors import InvalidCompletion

# Think blocks come first in a completion; only leading ones are removed, so a string value
# that happens to contain "<think>" inside the JSON is left alone.
_LEADING_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_UNCLOSED_THINK = re.compile(r"^\s*<think>(?!.*</think>).*$", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)


@dataclass(frozen=True, slots=True)
class InvalidItem:
    index: int
    error: str
    raw: Any


@dataclass(frozen=True, slots=True)
class ValidItem:
    index: int  # position in the completion, which is the position of its brief
    sample: BaseModel


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    valid: list[ValidItem] = field(default_factory=list)
    invalid: list[InvalidItem] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.valid) + len(self.invalid)


def strip_think(text: str) -> str:
    """Remove leading ``<think>...</think>`` blocks (and an unterminated one)."""
    while True:
        stripped = _LEADING_THINK.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return _UNCLOSED_THINK.sub("", text)


def clean_completion(text: str) -> str:
    """The JSON text of a completion: leading think blocks and markdown fences removed."""
    text = strip_think(text).strip()
    if text.startswith(("{", "[")):
        return text
    fenced = _FENCE.findall(text)
    if fenced:
        # The longest fenced block is the payload; short ones are usually inline examples.
        return str(max(fenced, key=len)).strip()
    return text


_LONG_DIGITS = re.compile(r"\d{20}")


def extract_json(text: str) -> Any:
    """Decode the JSON value in ``text``; tolerate fences and prose before or after it."""
    cleaned = clean_completion(text)
    if not cleaned:
        raise InvalidCompletion("the completion is empty after removing think text and fences")
    if _LONG_DIGITS.search(cleaned) is None:  # orjson reads integers past 64 bits as floats
        try:
            return orjson.loads(cleaned)  # the common case, fast; anything it refuses: below
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(cleaned)  # NaN, Infinity, big integers, lone surrogates
    except json.JSONDecodeError as first_error:
        decoder = json.JSONDecoder()
        for i, char in enumerate(cleaned):
            if char in "{[":
                try:
                    value, _ = decoder.raw_decode(cleaned, i)
                except json.JSONDecodeError:
                    continue
                return value
        raise InvalidCompletion(
            f"no JSON value in the completion ({first_error.msg} at char {first_error.pos}; "
            f"starts {cleaned[:60]!r})"
        ) from None


def items_of(value: Any) -> list[Any]:
    """The list of items in ``{"samples": [...]}``, a bare list, or a single object."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if isinstance(value.get(BATCH_KEY), list):
            return list(value[BATCH_KEY])
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(value) == 1 and lists:
            return list(lists[0])  # {"items": [...]} or any other single wrapper key
        return [value]  # one sample, not wrapped
    raise InvalidCompletion(f"expected a JSON object or array, got {type(value).__name__}")


def parse_completion(text: str, model: type[BaseModel]) -> ParsedBatch:
    """Validate every item of a completion against ``model``."""
    return parse_items(items_of(extract_json(text)), model)


_OPEN_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*[ \t]*\n?")
_SAMPLES_ARRAY = re.compile(r'"' + BATCH_KEY + r'"\s*:\s*\[')


def complete_items(text: str) -> list[Any]:
    """The complete items at the start of a truncated answer's array: ``{"samples": [A, B,
    {"x": ...`` gives ``[A, B]``. What a model wrote before it ran out of tokens is kept, and
    only the missing items are asked for again."""
    text = strip_think(text).strip()
    text = _OPEN_FENCE.sub("", text, count=1)
    match = _SAMPLES_ARRAY.search(text)
    if match is not None:
        position = match.end()
    else:
        bracket = text.find("[")
        if bracket < 0:
            return []
        position = bracket + 1
    decoder = json.JSONDecoder()
    items: list[Any] = []
    length = len(text)
    while position < length:
        while position < length and text[position] in " \t\r\n,":
            position += 1
        if position >= length or text[position] == "]":
            break
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            break  # the item the model was writing when it stopped
        items.append(value)
    return items


def parse_items(raw_items: Sequence[Any], model: type[BaseModel], offset: int = 0) -> ParsedBatch:
    """Validate already-decoded items; ``offset`` is the position of the first (its brief)."""
    valid: list[ValidItem] = []
    invalid: list[InvalidItem] = []
    for index, raw in enumerate(raw_items, start=offset):
        try:
            valid.append(ValidItem(index, model.model_validate(raw)))
        except ValidationError as exc:
            invalid.append(InvalidItem(index, _summarize(exc), raw))
    return ParsedBatch(valid, invalid)


def _summarize(exc: ValidationError, limit: int = 3) -> str:
    parts: Sequence[str] = [
        f"{'.'.join(str(p) for p in e['loc']) or '(item)'}: {e['msg']}"
        for e in exc.errors()[:limit]
    ]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
