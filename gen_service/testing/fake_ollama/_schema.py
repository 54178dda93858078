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
from collections.abc import Mapping
from typing import Any, cast

from gen_service.testing.fake_ollama._text import WORDS, iso, words

_MAX_DEPTH = 8  # schema nesting past which only required properties and minItems are generated


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_or_none(value: object) -> float | None:
    return float(cast(float, value)) if _is_number(value) else None


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
                    if self._type_of(resolved) == _json_type_of(value) or (
                        self._type_of(resolved) == "number" and _is_number(value)
                    ):
                        return resolved
        return schema

    @staticmethod
    def _type_of(schema: Mapping[str, Any]) -> str:
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
            kind = self._type_of(s)
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
        min_items = s.get("minItems")
        max_items = s.get("maxItems")
        lo = int(min_items) if isinstance(min_items, int) else 1
        if depth > _MAX_DEPTH:
            lo = int(min_items) if isinstance(min_items, int) else 0
            hi = lo
        elif isinstance(max_items, int):
            hi = max(int(max_items), lo) if isinstance(min_items, int) else int(max_items)
            lo = min(lo, hi)
        else:
            hi = lo + 2 if isinstance(min_items, int) else 3
        count = self.rng.randint(lo, hi)
        out: list[Any] = []
        prefix = s.get("prefixItems")
        if isinstance(prefix, list):
            out = [self.value(p, depth + 1) for p in prefix[:count]]
        items = s.get("items", {})
        if items is False:
            return out
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
        min_len = s.get("minLength")
        max_len = s.get("maxLength")
        lo = int(min_len) if isinstance(min_len, int) else 0
        while len(text) < lo:
            text += " " + rng.choice(WORDS)
        if isinstance(max_len, int) and len(text) > max_len:
            cut = text[:max_len]
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
        low, low_ex, high, high_ex = self._bounds(s)
        lo = None if low is None else low + (0.01 if low_ex else 0.0)
        hi = None if high is None else high - (0.01 if high_ex else 0.0)
        if lo is None and hi is None:
            lo, hi = 0.0, 100.0
        elif lo is None:
            assert hi is not None
            lo = hi - 100.0
        elif hi is None:
            hi = lo + 100.0
        hi = max(hi, lo)
        value = round(self.rng.uniform(lo, hi), 2)
        if value < lo:
            value = math.ceil(round(lo * 100, 6)) / 100
        if value > hi:
            value = math.floor(round(hi * 100, 6)) / 100
        return value

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
                if name in item and _is_number(item[name]):
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
        if _is_number(item):
            bad = self._out_of_range(s, cast(float, item))
            return bad if bad is not None else words(self.rng, 3)
        if isinstance(item, str):
            return self.rng.randint(1000, 9999)
        return words(self.rng, 3)
