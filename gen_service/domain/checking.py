"""One entry point for the generation-time checks (memo stage 1): ``check(sample, brief)``.

A sample passes when it is schema-valid (pydantic did that), has no placeholder, every
free-text field reads as writing (:mod:`gen_service.domain.content`), the data type's own
consistency rules hold, and, given the brief it was written from, it is what the brief asked
for: each pinned field as pinned (``off_brief``), plus the type's brief checks. Every problem
is ``"code: detail"``; a sample with any problem is stored as rejected with all of them.

Pins are also written into the request's schema (:func:`pin_item_schema`), so constrained
decoding cannot miss them; the check stays for backends that ignore schemas.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from gen_service.domain.content import TextRule, content_problems, text_rules
from gen_service.domain.datatypes._base import DataTypeSpec, ItemContext, Pin
from gen_service.domain.schema import grammar_safe

_FLOAT_SLACK = 0.005  # numbers are compared at two decimals


# Rules per (spec, overrides): building them walks the model's JSON schema (milliseconds), and
# every sample of a type asks for the same ones. The spec is kept in the value so its id stays
# unique while cached.
_RULES: dict[tuple[int, tuple[tuple[str, int], ...]], tuple[DataTypeSpec, dict[str, TextRule]]]
_RULES = {}


def rules_for(
    spec: DataTypeSpec, min_words: Mapping[str, int] | None = None
) -> Mapping[str, TextRule]:
    """The content rule of each free-text field of ``spec``, with per-field minimum word counts
    from the config applied (``min_words`` keys are rule keys, e.g. ``dialogue[]``); raises
    KeyError for a key that is not a free-text field."""
    overrides = tuple(sorted((min_words or {}).items()))
    cached = _RULES.get((id(spec), overrides))
    if cached is not None:
        return cached[1]
    rules = text_rules(spec.model.model_json_schema(mode="serialization"), spec.text_rules)
    for key, count in overrides:
        if key not in rules:
            raise KeyError(
                f"{spec.name} has no free-text field {key!r}; its fields: {', '.join(rules)}"
            )
        rules[key] = TextRule(rules[key].kind, count)
    _RULES[(id(spec), overrides)] = (spec, rules)
    return rules


def check(
    spec: DataTypeSpec,
    sample: BaseModel,
    brief: ItemContext | None = None,
    *,
    rules: Mapping[str, TextRule] | None = None,
    payload: Mapping[str, Any] | None = None,
) -> list[str]:
    """Every problem of ``sample`` (empty: it passes). ``payload`` is its JSON dump when the
    caller has one already."""
    if payload is None:
        payload = sample.model_dump(mode="json")
    problems = [p for c in spec.checks for p in c(sample)]
    problems += content_problems(payload, rules if rules is not None else rules_for(spec))
    if brief is not None:
        problems += pin_problems(payload, brief.pins)
        problems += [p for c in spec.brief_checks for p in c(sample, brief)]
    return problems


def _value_at(payload: Mapping[str, Any], path: str) -> Any:
    node: Any = payload
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def pin_problems(payload: Mapping[str, Any], pins: Mapping[str, Pin]) -> list[str]:
    """``off_brief`` problems: a pinned field whose value is not what the brief fixed."""
    problems: list[str] = []
    for path, pin in pins.items():
        value = _value_at(payload, path)
        if pin.const is not None:
            same = (
                abs(float(value) - float(pin.const)) <= _FLOAT_SLACK
                if isinstance(pin.const, float) and isinstance(value, int | float)
                else value == pin.const
            )
            if not same:
                problems.append(f"off_brief: {path} is {value!r}, the brief says {pin.const!r}")
        elif isinstance(value, int | float):
            low = -float("inf") if pin.low is None else pin.low - _FLOAT_SLACK
            high = float("inf") if pin.high is None else pin.high + _FLOAT_SLACK
            if not low <= value <= high:
                problems.append(
                    f"off_brief: {path} is {value!r}, the brief asks for "
                    f"{pin.low:g} to {pin.high:g}"
                )
    return problems


def pin_item_schema(item: Mapping[str, Any], pins: Mapping[str, Pin]) -> dict[str, Any]:
    """A copy of an (inlined) item schema in which each pinned field says what the brief
    fixed: ``const`` for an exact value, narrowed ``minimum``/``maximum`` for a range."""
    schema: dict[str, Any] = copy.deepcopy(dict(item))
    for path, pin in pins.items():
        node = schema
        for key in path.split("."):
            properties = node.get("properties")
            if not isinstance(properties, dict) or key not in properties:
                raise KeyError(f"the schema has no field {path!r}")
            node = properties[key]
        if pin.const is not None:
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"):
                node.pop(key, None)
            for key in ("minLength", "maxLength", "pattern"):
                node.pop(key, None)
            node["const"] = pin.const
        else:
            if pin.low is not None:
                node["minimum"] = max(float(node.get("minimum", pin.low)), pin.low)
            if pin.high is not None:
                node["maximum"] = min(float(node.get("maximum", pin.high)), pin.high)
    return schema


# Characters per required word in a free-text field's ``minLength``: a hint under constrained
# decoding (a model cannot end a field after one word) and what makes the fake Ollama write
# enough words; the word count itself is the check.
CHARS_PER_WORD = 8


def item_schema_for(
    item: Mapping[str, Any], rules: Mapping[str, TextRule], brief: ItemContext | None
) -> dict[str, Any]:
    """An (inlined) item schema with the brief's pins and each free-text field's minimum
    length from its rule (never above the field's ``maxLength``)."""
    schema = pin_item_schema(item, brief.pins) if brief is not None else copy.deepcopy(dict(item))
    for key, rule in rules.items():
        if rule.kind == "name" or rule.min_words <= 1:
            continue
        for node in _nodes_at(schema, key):
            if node.get("type") != "string" or "const" in node:
                continue
            low = rule.min_words * CHARS_PER_WORD
            high = node.get("maxLength")
            if isinstance(high, int):
                low = min(low, high)
            node["minLength"] = max(int(node.get("minLength", 0)), low)
    return schema


def _nodes_at(schema: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The schema nodes a rule key names (``factors[].factor``: the item's property)."""
    nodes = [schema]
    for part in key.split("."):
        name, is_list = (part[:-2], True) if part.endswith("[]") else (part, False)
        found: list[dict[str, Any]] = []
        for node in nodes:
            child = node.get("properties", {}).get(name)
            if isinstance(child, dict):
                if is_list and isinstance(child.get("items"), dict):
                    child = child["items"]
                found.append(child)
        nodes = found
    return nodes


def request_schema(
    item: Mapping[str, Any],
    briefs: list[ItemContext],
    rules: Mapping[str, TextRule],
    *,
    positional: bool = True,
    grammar_cap: int | None = None,
    letters: bool = False,
) -> dict[str, Any]:
    """The batch schema ``{"samples": [...]}`` for one request: exactly ``len(briefs)`` items;
    with ``positional`` each item in its own place (``prefixItems``) carrying its brief's
    pins, else one item schema for all (the pins are then the check's alone). With
    ``grammar_cap`` each item is made :func:`~gen_service.domain.schema.grammar_safe` with
    that string cap (and its letters-only text with ``letters``)."""

    def item_for(brief: ItemContext | None) -> dict[str, Any]:
        schema = item_schema_for(item, rules, brief)
        if grammar_cap is None:
            return schema
        return dict(grammar_safe(schema, grammar_cap, letters=letters))

    array: dict[str, Any] = {"type": "array", "minItems": len(briefs), "maxItems": len(briefs)}
    if positional:
        array["prefixItems"] = [item_for(b) for b in briefs]
        array["items"] = False
    else:
        array["items"] = item_for(None)
    return {
        "type": "object",
        "properties": {"samples": array},
        "required": ["samples"],
        "additionalProperties": False,
    }
