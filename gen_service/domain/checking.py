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

from gen_service.domain.content import (
    TextRule,
    content_problems,
    string_leaves,
    text_rules,
    value_at,
)
from gen_service.domain.datatypes._base import (
    DataTypeSpec,
    ItemContext,
    Pin,
    placeholder_problems_of,
)
from gen_service.domain.schema import grammar_safe, item_schema

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
    # Every type's samples: placeholders first, the type's own checks, then the content
    # checks; the first and the last read the sample's strings, walked once for both.
    leaves = string_leaves(payload)
    problems = placeholder_problems_of(payload, leaves)
    problems += [p for c in spec.checks for p in c(sample)]
    problems += content_problems(payload, rules if rules is not None else rules_for(spec), leaves)
    if brief is not None:
        problems += pin_problems(payload, brief.pins)
        problems += [p for c in spec.brief_checks for p in c(sample, brief)]
    return problems


def pin_problems(payload: Mapping[str, Any], pins: Mapping[str, Pin]) -> list[str]:
    """``off_brief`` problems: a pinned field whose value is not what the brief fixed."""
    problems: list[str] = []
    for path, pin in pins.items():
        value = value_at(payload, path)
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
        _pin_node(node, pin)
    return schema


def _pin_node(node: dict[str, Any], pin: Pin) -> dict[str, Any]:
    """Make one schema node say what ``pin`` fixes (in place; returned for convenience)."""
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
    return node


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
    template = ItemTemplate(item, rules, grammar_cap=grammar_cap, letters=letters)
    return template.request_schema(briefs, positional=positional)


class ItemTemplate:
    """One data type's request item, made once and pinned per brief.

    ``for_brief(b)`` equals ``grammar_safe(item_schema_for(item, rules, b))`` (without
    ``grammar_cap``, ``item_schema_for(item, rules, b)``) without rewriting the whole item for
    every brief: a pin rewrites its own node only, after the word rules (a ``const`` drops the
    minimum length they set; a range pins a number, which they never touch), and
    :func:`grammar_safe` rewrites each node from its own keys and its rewritten children. So
    the unpinned item is finished once, and a brief's item is a copy of it along its pins'
    paths with each pinned field finished on its own (and remembered: briefs repeat pins).
    What it returns is shared and read-only: backends serialize a schema, never change it."""

    # Remembered pinned fields (each a few hundred bytes): ranges and enum values, which
    # repeat. A text pin (a name) is new with nearly every brief: its field is kept once, with
    # no text, not once per name (20,000 names were ~40 MB over the five types).
    _MAX_PINNED = 20_000

    def __init__(
        self,
        item: Mapping[str, Any],
        rules: Mapping[str, TextRule],
        *,
        grammar_cap: int | None = None,
        letters: bool = False,
    ) -> None:
        self._grammar_cap = grammar_cap
        self._letters = letters
        self._base = item_schema_for(item, rules, None)
        self._finished = self._finish(self._base)
        self._pinned: dict[tuple[str, Pin], dict[str, Any]] = {}
        self._text_pins: dict[str, dict[str, Any]] = {}

    def _finish(self, node: dict[str, Any]) -> dict[str, Any]:
        if self._grammar_cap is None:
            return node
        return dict(grammar_safe(node, self._grammar_cap, letters=self._letters))

    def for_brief(self, brief: ItemContext | None) -> dict[str, Any]:
        """The item schema asking for what ``brief`` pins (None: the unpinned item)."""
        if brief is None or not brief.pins:
            return self._finished
        out = dict(self._finished)
        for path, pin in brief.pins.items():
            target = out
            keys = path.split(".")
            for key in keys[:-1]:
                properties = dict(target.get("properties") or {})
                target["properties"] = properties
                if not isinstance(properties.get(key), dict):
                    raise KeyError(f"the schema has no field {path!r}")
                properties[key] = dict(properties[key])
                target = properties[key]
            properties = dict(target.get("properties") or {})
            target["properties"] = properties
            properties[keys[-1]] = self._pinned_node(path, pin)
        return out

    def _pinned_node(self, path: str, pin: Pin) -> dict[str, Any]:
        if isinstance(pin.const, str):
            # A text pin (a name) is new with nearly every brief, and only its value differs
            # from one to the next: finishing never looks inside a string, so the field is
            # finished once with an empty text, and each brief's copy carries its own.
            shape = self._text_pins.get(path)
            if shape is None:
                shape = self._finish(_pin_node(copy.deepcopy(_node_at(self._base, path)), _NO_TEXT))
                self._text_pins[path] = shape
            return {**shape, "const": pin.const}
        try:
            node = self._pinned.get((path, pin))
        except TypeError:  # an unhashable const: not remembered
            return self._finish(_pin_node(copy.deepcopy(_node_at(self._base, path)), pin))
        if node is None:
            node = self._finish(_pin_node(copy.deepcopy(_node_at(self._base, path)), pin))
            if len(self._pinned) >= self._MAX_PINNED:
                self._pinned.clear()
            self._pinned[(path, pin)] = node
        return node

    def request_schema(
        self, briefs: list[ItemContext], *, positional: bool = True
    ) -> dict[str, Any]:
        """The batch schema for ``briefs`` (see :func:`request_schema`)."""
        array: dict[str, Any] = {
            "type": "array",
            "minItems": len(briefs),
            "maxItems": len(briefs),
        }
        if positional:
            array["prefixItems"] = [self.for_brief(b) for b in briefs]
            array["items"] = False
        else:
            array["items"] = self.for_brief(None)
        return {
            "type": "object",
            "properties": {"samples": array},
            "required": ["samples"],
            "additionalProperties": False,
        }


_NO_TEXT = Pin.exactly("")


def _node_at(schema: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The schema node of the field ``path`` (``a.b``: property b of property a)."""
    node: Any = schema
    for key in path.split("."):
        properties = node.get("properties")
        if not isinstance(properties, dict) or key not in properties:
            raise KeyError(f"the schema has no field {path!r}")
        node = properties[key]
    return dict(node)


# Item templates per (spec, string cap, word-count overrides, grammar cap, letters): every
# request of a type asks for the same one. The spec is kept in the value so its id stays unique.
_TEMPLATES: dict[
    tuple[int, int | None, tuple[tuple[str, int], ...], int | None, bool],
    tuple[DataTypeSpec, ItemTemplate],
] = {}


def item_template(
    spec: DataTypeSpec,
    *,
    max_string_chars: int | None,
    min_words: Mapping[str, int] | None = None,
    grammar_cap: int | None = None,
    letters: bool = False,
) -> ItemTemplate:
    """The (cached) :class:`ItemTemplate` of ``spec``'s requests: its item schema with strings
    capped at ``max_string_chars`` and the rules of :func:`rules_for`."""
    overrides = tuple(sorted((min_words or {}).items()))
    key = (id(spec), max_string_chars, overrides, grammar_cap, letters)
    cached = _TEMPLATES.get(key)
    if cached is None:
        item = item_schema(spec.model, max_string_chars)
        template = ItemTemplate(
            item, rules_for(spec, min_words), grammar_cap=grammar_cap, letters=letters
        )
        cached = _TEMPLATES[key] = (spec, template)
    return cached[1]
