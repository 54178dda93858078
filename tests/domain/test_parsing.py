"""Completion cleaning and parsing: pure functions, property-tested."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from gen_service.domain.parsing import clean_completion, extract_json, parse_completion
from gen_service.errors import InvalidCompletion


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    score: float = Field(ge=0, le=1)


items = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != ""),
            "score": st.floats(min_value=0, max_value=1, allow_nan=False),
        }
    ),
    min_size=0,
    max_size=8,
)
wrappers = st.sampled_from(["plain", "fenced", "fenced_lang", "think", "prose", "all"])


def wrap(text: str, how: str) -> str:
    if how == "fenced":
        return f"```\n{text}\n```"
    if how == "fenced_lang":
        return f"Here you go:\n```json\n{text}\n```\nHope this helps."
    if how == "think":
        return f"<think>I should write {{braces}} and [brackets].</think>\n{text}"
    if how == "prose":
        return f"Sure! {text} That is all."
    if how == "all":
        return f"<think>plan</think>```json\n{text}\n```"
    return text


@given(items, wrappers, st.booleans())
def test_wrapped_json_round_trips(data: list[dict[str, object]], how: str, bare: bool) -> None:
    """Fences, think blocks and prose around the JSON never change what is parsed."""
    payload = data if bare else {"samples": data}
    parsed = parse_completion(wrap(json.dumps(payload), how), Item)
    assert [v.sample.model_dump() for v in parsed.valid] == data
    assert parsed.invalid == []
    assert [v.index for v in parsed.valid] == list(range(len(data)))


@given(items, st.lists(st.integers(min_value=0, max_value=7), max_size=4))
def test_invalid_items_are_counted_not_fatal(data: list[dict[str, object]], bad: list[int]) -> None:
    """An item that fails validation costs that item only, with its error recorded."""
    broken = [dict(d) for d in data]
    bad_indices = sorted({i for i in bad if i < len(broken)})
    for i in bad_indices:
        broken[i]["score"] = 7.5
    parsed = parse_completion(json.dumps({"samples": broken}), Item)
    assert [i.index for i in parsed.invalid] == bad_indices
    assert all("score" in i.error for i in parsed.invalid)
    assert len(parsed.valid) == len(data) - len(bad_indices)


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_invalid_completion(text: str) -> None:
    """Garbage never crashes the parser with anything but InvalidCompletion."""
    try:
        parsed = parse_completion(text, Item)
    except InvalidCompletion as exc:
        assert str(exc)  # the message says what was wrong
    else:
        assert parsed.total == len(parsed.valid) + len(parsed.invalid)
        assert all(isinstance(v.sample, Item) for v in parsed.valid)


def test_truncated_json_is_invalid_completion() -> None:
    """JSON cut off by num_predict is reported as InvalidCompletion."""
    text = json.dumps({"samples": [{"name": "a", "score": 0.5}, {"name": "b", "score": 0.2}]})
    with pytest.raises(InvalidCompletion):
        parse_completion(text[: len(text) // 2], Item)


def test_empty_after_think_is_invalid() -> None:
    """A completion that is only thinking (thinking ate the budget) is InvalidCompletion."""
    with pytest.raises(InvalidCompletion, match="empty"):
        extract_json("<think>long reasoning that never ends")


def test_unclosed_think_is_removed() -> None:
    """An unterminated think block is dropped along with everything after it."""
    assert clean_completion("<think>still thinking {") == ""


def test_single_object_is_one_item() -> None:
    """A lone object (no wrapper) is treated as one sample."""
    parsed = parse_completion('{"name": "x", "score": 1}', Item)
    assert len(parsed.valid) == 1


def test_other_wrapper_key_is_accepted() -> None:
    """{"items": [...]} is read like {"samples": [...]}."""
    parsed = parse_completion('{"items": [{"name": "x", "score": 0}]}', Item)
    assert parsed.valid[0].sample.model_dump() == {"name": "x", "score": 0}


def test_scalar_is_invalid() -> None:
    """A JSON scalar is not a batch."""
    with pytest.raises(InvalidCompletion, match="expected a JSON object or array"):
        parse_completion("42", Item)


def test_integers_past_64_bits_keep_every_digit() -> None:
    """The fast parser would read 123456789012345678901234567890 as a float; the answer keeps
    the integer the model wrote."""
    value = extract_json('{"samples": [{"n": 123456789012345678901234567890, "x": 1.5}]}')
    assert value == {"samples": [{"n": 123456789012345678901234567890, "x": 1.5}]}
    assert isinstance(value["samples"][0]["n"], int)


def test_nan_and_infinity_are_still_read() -> None:
    """What the standard library accepted and orjson refuses goes through the standard
    library."""
    value = extract_json('{"a": NaN, "b": Infinity}')
    assert value["b"] == float("inf") and value["a"] != value["a"]
