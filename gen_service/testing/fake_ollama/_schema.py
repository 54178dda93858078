"""The schema faker: a random value valid against a JSON schema, and the ``invalid_items`` fault.

It covers the subset LLM structured output uses: ``$ref`` (local), ``allOf``, ``anyOf`` and
``oneOf``, ``const``, ``enum``, objects with ``properties`` and ``required``, arrays with
``items``, ``prefixItems``, ``minItems``, ``maxItems`` and ``uniqueItems``, numbers with
inclusive and exclusive bounds and ``multipleOf``, strings with ``minLength``, ``maxLength``
and a few ``format`` values.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping
from typing import Any, TypeGuard, cast

from gen_service.testing.fake_ollama._text import WORDS, iso, words

_MAX_DEPTH = 8  # schema nesting past which only required properties and minItems are generated

# The grammar-safe text pattern the llama.cpp adapter puts on free-text strings
# (``domain/schema.grammar_safe``): a letter or digit, then m..n characters that need no
# JSON escape. Filler words always fit the character classes, so only the length bounds count.
_TEXT_PATTERN = re.compile(r'\^\[A-Za-z0-9\]\[\^"\\\\\\x00-\\x1f\]\{(?P<low>\d+),(?P<high>\d*)\}\$')


def is_number(value: object) -> TypeGuard[int | float]:
    """An int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_or_none(value: object) -> float | None:
    return float(cast(float, value)) if is_number(value) else None


def _count_or_none(value: object) -> int | None:
    """A non-negative integer keyword (``minItems``, ``maxLength`` ...), or None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _json_type_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class SchemaFaker:
    """Generates a value valid against a JSON schema (the subset LLM structured output uses)."""

    def __init__(self, rng: random.Random, root: Mapping[str, Any]) -> None:
        self.rng = rng
        self.root = root

    # ---- schema plumbing

    def _lookup(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for raw in ref[1:].split("/"):
            if not raw:
                continue
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node if isinstance(node, Mapping) else {}

    def resolve(self, schema: object) -> dict[str, Any]:
        """The schema with ``$ref`` followed and ``allOf`` merged into one dict."""
        current: dict[str, Any] = dict(schema) if isinstance(schema, Mapping) else {}
        for _ in range(32):  # a cycle of bare $refs stops here
            ref = current.get("$ref")
            if not isinstance(ref, str):
                break
            rest = {k: v for k, v in current.items() if k != "$ref"}
            current = {**self._lookup(ref), **rest}
        parts = current.pop("allOf", None)
        if isinstance(parts, list):
            for part in parts:
                current = self._merge(current, self.resolve(part))
        return current

    @staticmethod
    def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for key, value in extra.items():
            if key == "properties" and isinstance(value, Mapping):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                have = list(merged.get("required", []))
                merged["required"] = have + [r for r in value if r not in have]
            else:
                merged.setdefault(key, value)
        return merged

    def _branch(self, schema: Mapping[str, Any]) -> dict[str, Any] | None:
        """One option of ``anyOf``/``oneOf``, preferring non-null ones."""
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                resolved = [self.resolve(o) for o in options]
                non_null = [o for o in resolved if o.get("type") != "null"]
                if non_null and (len(non_null) == len(resolved) or self.rng.random() < 0.85):
                    return self.rng.choice(non_null)
                return self.rng.choice(resolved)
        return None

    def _branch_for(self, schema: dict[str, Any], value: object) -> dict[str, Any]:
        """The ``anyOf``/``oneOf`` option a generated ``value`` came from (by JSON type)."""
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list):
                for option in options:
                    resolved = self.resolve(option)
                    if self.type_of(resolved) == _json_type_of(value) or (
                        self.type_of(resolved) == "number" and is_number(value)
                    ):
                        return resolved
        return schema

    @staticmethod
    def type_of(schema: Mapping[str, Any]) -> str:
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, list) and declared:
            non_null = [t for t in declared if t != "null"]
            return str(non_null[0] if non_null else declared[0])
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    # ---- generation

    def value(self, schema: object, depth: int = 0) -> Any:
        s = self.resolve(schema)
        if "const" in s:
            return s["const"]
        enum = s.get("enum")
        if isinstance(enum, list) and enum:
            return self.rng.choice(enum)
        branch = self._branch(s)
        if branch is not None:
            return self.value(branch, depth + 1)
        declared = s.get("type")
        if isinstance(declared, list) and declared:
            non_null = [t for t in declared if t != "null"]
            kind = self.rng.choice(non_null) if non_null else "null"
        else:
            kind = self.type_of(s)
        if kind == "object":
            return self._object(s, depth)
        if kind == "array":
            return self._array(s, depth)
        if kind == "integer":
            return self._integer(s)
        if kind == "number":
            return self._number(s)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(s)

    def refit(self, schema: object, value: Any, depth: int = 0) -> Any:
        """``value`` (an earlier answer) made valid against ``schema``: constants and enums
        set, numbers clamped into their bounds, strings fitted to their lengths, arrays cut or
        extended to their length, missing properties generated. The ``duplicate`` fault uses
        it: the same text again under a new request's constants, as a model repeating itself
        under a new brief would write it."""
        s = self.resolve(schema)
        if "const" in s:
            return s["const"]
        enum = s.get("enum")
        if isinstance(enum, list) and enum:
            return value if value in enum else self.rng.choice(enum)
        kind = self.type_of(s)
        if kind == "object" and isinstance(value, Mapping):
            props = s.get("properties")
            if not isinstance(props, Mapping):
                return dict(value)
            return {
                name: self.refit(sub, value[name], depth + 1)
                if name in value
                else self.value(sub, depth + 1)
                for name, sub in props.items()
            }
        if kind == "array" and isinstance(value, list):
            prefix = s.get("prefixItems")
            positional = prefix if isinstance(prefix, list) else []
            items = s.get("items", {})
            lo = _count_or_none(s.get("minItems")) or 0
            hi = _count_or_none(s.get("maxItems"))
            hi = len(value) if hi is None else hi
            if items is False:
                hi = min(hi, len(positional))
            out = [
                self.refit(positional[i] if i < len(positional) else items, v, depth + 1)
                for i, v in enumerate(value[:hi])
            ]
            while len(out) < lo:
                i = len(out)
                out.append(self.value(positional[i] if i < len(positional) else items, depth + 1))
            return out
        if kind in ("integer", "number") and is_number(value):
            low, _, high, _ = self._bounds(s)
            if (low is not None and value < low) or (high is not None and value > high):
                return self.value(s, depth)
            return value
        if kind == "string" and isinstance(value, str):
            return self.fit_string(s, value)
        if (kind == "boolean" and isinstance(value, bool)) or (kind == "null" and value is None):
            return value
        return self.value(s, depth)

    def _object(self, s: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = s.get("properties")
        required = [r for r in s.get("required", []) if isinstance(r, str)]
        out: dict[str, Any] = {}
        if isinstance(props, Mapping):
            for name, sub in props.items():
                if depth > _MAX_DEPTH and name not in required:
                    continue
                out[name] = self.value(sub, depth + 1)
        for name in required:
            if name not in out:
                out[name] = words(self.rng, self.rng.randint(2, 5))
        return out

    def _array(self, s: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = s.get("prefixItems")
        items = s.get("items", {})
        if isinstance(items, list):  # the tuple form of drafts 4 to 2019-09
            prefix, items = items, s.get("additionalItems", {})
        positional = prefix if isinstance(prefix, list) else []
        lo, hi = self._length(s, len(positional), items is False, depth)
        count = self.rng.randint(lo, hi)
        out = [self.value(p, depth + 1) for p in positional[:count]]
        seen = {json.dumps(v, sort_keys=True) for v in out}
        unique = s.get("uniqueItems") is True
        while len(out) < count:
            item = self.value(items, depth + 1)
            key = json.dumps(item, sort_keys=True)
            for _ in range(10):  # uniqueItems over a small enum may need a few draws
                if not unique or key not in seen:
                    break
                item = self.value(items, depth + 1)
                key = json.dumps(item, sort_keys=True)
            seen.add(key)
            out.append(item)
        return out

    @staticmethod
    def _length(s: Mapping[str, Any], positional: int, closed: bool, depth: int) -> tuple[int, int]:
        """The range of an array's length: ``minItems``/``maxItems`` where given, else exactly
        the ``prefixItems`` positions, or 1 to 3 items without them; never more items than a
        closed tuple (``items: false``) has positions."""
        min_items, max_items = _count_or_none(s.get("minItems")), _count_or_none(s.get("maxItems"))
        if depth > _MAX_DEPTH:
            lo = hi = min_items or 0
        else:
            lo = min_items if min_items is not None else max(positional, 1)
            if max_items is not None:
                hi = max(max_items, lo) if min_items is not None else max_items
            elif closed or (positional and min_items is None):
                hi = lo
            else:
                hi = lo + 2
        if closed:
            hi = min(hi, positional)
        return min(lo, hi), hi

    def _string(self, s: Mapping[str, Any]) -> str:
        fmt = s.get("format")
        rng = self.rng
        if fmt == "date-time":
            text = iso(1.7e9 + rng.random() * 1e8)
        elif fmt == "date":
            text = iso(1.7e9 + rng.random() * 1e8)[:10]
        elif fmt == "time":
            text = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        elif fmt == "email":
            text = f"{rng.choice(WORDS)}.{rng.choice(WORDS)}{rng.randint(1, 999)}@example.com"
        elif fmt in ("uri", "url"):
            text = f"https://example.com/{rng.choice(WORDS)}/{rng.choice(WORDS)}"
        elif fmt == "uuid":
            text = "%08x-%04x-4%03x-a%03x-%012x" % (  # noqa: UP031 - fixed-width hex fields
                rng.getrandbits(32),
                rng.getrandbits(16),
                rng.getrandbits(12),
                rng.getrandbits(12),
                rng.getrandbits(48),
            )
        else:
            text = words(rng, rng.randint(4, 14))
        return self.fit_string(s, text)

    def fit_string(self, s: Mapping[str, Any], text: str) -> str:
        """``text`` lengthened or cut to the schema's length bounds, those a grammar-safe
        ``pattern`` implies included (see ``_TEXT_PATTERN``)."""
        lo = _count_or_none(s.get("minLength")) or 0
        hi = _count_or_none(s.get("maxLength"))
        pattern = s.get("pattern")
        shape = _TEXT_PATTERN.fullmatch(pattern) if isinstance(pattern, str) else None
        if shape is not None:
            lo = max(lo, 1 + int(shape["low"]))
            if shape["high"]:
                high = 1 + int(shape["high"])
                hi = high if hi is None else min(hi, high)
            if not text[:1].isascii() or not text[:1].isalnum():
                text = self.rng.choice(WORDS) + " " + text
        while len(text) < lo:
            text += " " + self.rng.choice(WORDS)
        if hi is not None and len(text) > hi:
            cut = text[:hi]
            text = cut.rstrip() if len(cut.rstrip()) >= lo else cut
        return text

    @staticmethod
    def _bounds(s: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
        """(low, low exclusive, high, high exclusive) from draft-4 or draft-6+ keywords."""
        low, high = _number_or_none(s.get("minimum")), _number_or_none(s.get("maximum"))
        raw_ex_min, raw_ex_max = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
        low_ex = low is not None and raw_ex_min is True  # draft 4: a boolean beside minimum
        high_ex = high is not None and raw_ex_max is True
        ex_min, ex_max = _number_or_none(raw_ex_min), _number_or_none(raw_ex_max)
        if ex_min is not None and (low is None or ex_min >= low):
            low, low_ex = ex_min, True
        if ex_max is not None and (high is None or ex_max <= high):
            high, high_ex = ex_max, True
        return low, low_ex, high, high_ex

    def _integer(self, s: Mapping[str, Any]) -> int:
        low, low_ex, high, high_ex = self._bounds(s)
        lo = None if low is None else (math.floor(low) + 1 if low_ex else math.ceil(low))
        hi = None if high is None else (math.ceil(high) - 1 if high_ex else math.floor(high))
        if lo is None and hi is None:
            lo, hi = 0, 100
        elif lo is None:
            assert hi is not None
            lo = hi - 100
        elif hi is None:
            hi = lo + 100
        hi = max(hi, lo)
        step = s.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first <= last:
                return self.rng.randint(first, last) * step
        return self.rng.randint(lo, hi)

    def _number(self, s: Mapping[str, Any]) -> float:
        """A two-decimal number within the bounds (a plain one where no two-decimal one fits)."""
        low, low_ex, high, high_ex = self._bounds(s)
        if low is None and high is None:
            low, high = 0.0, 100.0
        elif low is None:
            assert high is not None
            low = high - 100.0
        elif high is None:
            high = low + 100.0
        assert low is not None and high is not None
        cents_low, cents_high = round(low * 100, 6), round(high * 100, 6)
        first = (math.floor(cents_low) + 1 if low_ex else math.ceil(cents_low)) / 100
        last = (math.ceil(cents_high) - 1 if high_ex else math.floor(cents_high)) / 100
        if first > last:
            return (low + high) / 2 if low < high else low
        return min(max(round(self.rng.uniform(first, last), 2), first), last)

    # ---- the invalid_items fault

    def spoil_arrays(self, schema: object, value: object) -> int:
        """Make about half the items of each outermost array invalid; returns how many."""
        s = self._branch_for(self.resolve(schema), value)
        if isinstance(value, list):
            items = s.get("items")
            if not isinstance(items, Mapping) or not value:
                return 0
            count = max(1, round(len(value) / 2))
            for i in self.rng.sample(range(len(value)), count):
                value[i] = self._spoil(items, value[i])
            return count
        if isinstance(value, dict):
            props = s.get("properties")
            if not isinstance(props, Mapping):
                return 0
            return sum(self.spoil_arrays(props[k], value[k]) for k in props if k in value)
        return 0

    def _out_of_range(self, s: Mapping[str, Any], value: float) -> float | None:
        low, _, high, _ = self._bounds(s)
        bad: float
        if high is not None:
            bad = high + 1000
        elif low is not None:
            bad = low - 1000
        else:
            return None
        return int(bad) if isinstance(value, int) else bad

    def _spoil(self, schema: object, item: object) -> Any:
        s = self._branch_for(self.resolve(schema), item)
        if isinstance(item, dict):
            required = [r for r in s.get("required", []) if r in item]
            props = s.get("properties") if isinstance(s.get("properties"), Mapping) else {}
            ranged: list[tuple[str, float]] = []
            for name, sub in cast(Mapping[str, Any], props).items():
                if name in item and is_number(item[name]):
                    bad = self._out_of_range(self.resolve(sub), item[name])
                    if bad is not None:
                        ranged.append((name, bad))
            if required and (not ranged or self.rng.random() < 0.5):
                del item[self.rng.choice(required)]
                return item
            if ranged:
                name, bad = self.rng.choice(ranged)
                item[name] = bad
                return item
            return words(self.rng, 3)  # an object schema never accepts a string
        if is_number(item):
            bad = self._out_of_range(s, cast(float, item))
            return bad if bad is not None else words(self.rng, 3)
        if isinstance(item, str):
            return self.rng.randint(1000, 9999)
        return words(self.rng, 3)
