"""Grammar-safe schemas: capped free text as patterns, small numeric ranges as enums."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.schema import (
    GRAMMAR_MAX_STRING_CHARS,
    batch_schema,
    grammar_safe,
)


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every object node of a schema."""
    if isinstance(node, list):
        return [n for v in node for n in _walk(v)]
    if not isinstance(node, dict):
        return []
    return [node, *(n for v in node.values() for n in _walk(v))]


def test_small_ranges_become_enums() -> None:
    """Integers list every value; numbers step by 0.01; exclusive bounds drop the end."""
    schema = {
        "type": "object",
        "properties": {
            "capacity": {"type": "integer", "minimum": 1, "maximum": 10},
            "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "d"},
            "delta": {"type": "number", "exclusiveMinimum": -1, "maximum": 1},
        },
    }
    out = grammar_safe(schema)["properties"]
    assert out["capacity"] == {"enum": list(range(1, 11))}
    assert out["score"]["enum"][:3] == [0.0, 0.01, 0.02] and out["score"]["enum"][-1] == 1.0
    assert len(out["score"]["enum"]) == 101 and out["score"]["description"] == "d"
    assert out["delta"]["enum"][0] == -0.99 and out["delta"]["enum"][-1] == 1.0


def test_wide_or_open_ranges_are_left_alone() -> None:
    """A range too wide to list, or with one open end, keeps its plain type."""
    wide = {"type": "integer", "minimum": 0, "maximum": 100_000}
    open_end = {"type": "number", "minimum": 0}
    assert grammar_safe(wide) == wide
    assert grammar_safe(open_end) == open_end


@pytest.mark.parametrize(
    ("node", "max_string_chars", "pattern_tail"),
    [
        ({"type": "string"}, 2000, "{0,799}$"),  # uncapped: the grammar cap
        ({"type": "string", "minLength": 1, "maxLength": 2000}, 2000, "{0,799}$"),
        ({"type": "string", "maxLength": 40}, 2000, "{0,39}$"),  # a tighter bound stays
        ({"type": "string", "minLength": 3, "maxLength": 40}, 2000, "{2,39}$"),
        ({"type": "string"}, 100, "{0,99}$"),  # the caller's smaller cap wins
    ],
)
def test_free_text_becomes_a_capped_pattern(
    node: dict[str, Any], max_string_chars: int, pattern_tail: str
) -> None:
    """A free-text string's length bounds, capped at 800 characters, become a pattern that
    starts with a letter or digit and holds no quote, backslash or control character."""
    out = grammar_safe(node, max_string_chars)
    assert set(out) == {"type", "pattern"}
    assert out["pattern"].startswith("^[A-Za-z0-9]")
    assert out["pattern"].endswith(pattern_tail)
    text_ok = re.compile(out["pattern"])
    assert text_ok.match("Mara waits by the door.")
    assert not text_ok.match('"quoted"') and not text_ok.match(");,")
    assert not text_ok.match("A line\nbreak") and not text_ok.match("back\\slash")


def test_a_minimum_length_above_the_cap_is_clamped_into_it() -> None:
    """A minLength beyond the cap cannot hold: the pattern asks for exactly the cap."""
    out = grammar_safe({"type": "string", "minLength": 5000})
    assert out["pattern"].endswith("{799,799}$")


def test_strings_with_their_own_constraint_are_left_alone() -> None:
    """Enums, consts, patterns and formats are already what the grammar should enforce."""
    nodes = [
        {"type": "string", "enum": ["none", "full"]},
        {"type": "string", "const": "x"},
        {"type": "string", "pattern": "^[a-z]+$"},
        {"type": "string", "format": "date"},
    ]
    assert [grammar_safe(n) for n in nodes] == nodes


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("size", [1, 2, 15, 50])
def test_every_data_type_is_rewritten_completely_and_idempotently(name: str, size: int) -> None:
    """Each type's batch schema, as the producer builds it by default, has no free-text
    string or bounded number left, caps every text at 800 characters, and a second rewrite
    changes nothing; the grammar_safe flag of batch_schema gives the same schema."""
    spec = REGISTRY[name]
    plain = batch_schema(spec.model, size, max_string_chars=2000)
    safe = grammar_safe(plain)
    assert grammar_safe(safe) == safe
    assert batch_schema(spec.model, size, max_string_chars=2000, grammar_safe=True) == safe
    nodes = _walk(safe)
    texts = [n for n in nodes if n.get("type") == "string" and "pattern" in n]
    assert texts, "every data type has free text"
    for node in nodes:
        assert not (node.get("type") == "string" and not {"pattern", "enum", "const"} & set(node))
        assert "maxLength" not in node and "minimum" not in node and "maximum" not in node
    for node in texts:
        high = int(re.fullmatch(r".*,(\d+)\}\$", node["pattern"]).group(1))  # type: ignore[union-attr]
        assert high + 1 <= GRAMMAR_MAX_STRING_CHARS


def test_the_batch_wrapper_is_untouched() -> None:
    """The rewrite keeps the samples array's exact size: it holds no text or number bounds."""
    safe = batch_schema(REGISTRY["dramatic_irony"].model, 7, grammar_safe=True)
    array = safe["properties"]["samples"]
    assert (array["minItems"], array["maxItems"]) == (7, 7)
