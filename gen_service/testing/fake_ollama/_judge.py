"""The fake's judge: verdicts for judge requests, consistent with what the fake generated.

A chat request is a judge request when its ``format`` schema's top-level properties include
``authenticity``, ``consistency``, ``complexity``, ``usability`` and ``recommendation``. The
verdict fills that schema (extra properties are faked as usual), then sets:

- the four dimensions (where the schema makes them numbers, or an enum of numbers as a
  grammar-safe schema writes a range): with probability
  ``JudgeBehaviour.low_quality_share`` all four drawn from [0.30, 0.65], otherwise from
  [0.75, 0.98], two decimals;
- ``issues`` (an array of strings): 0-2 short sentences, 2-4 when low; ``recommendation`` (a
  free-text string): one sentence;
- ``labels`` (an object): re-derived from the remembered item the request quotes (``_memory``
  finds it by the request's JSON string literals). With probability
  ``JudgeBehaviour.label_disagreement_share`` the labels disagree, else they agree. Per label
  property the schema has (the others are faked):

  ======================== ==================================== ================================
  label                    agree                                disagree
  ======================== ==================================== ================================
  ocean                    the item's ``ocean`` (top level or   each trait moved 0.35 toward its
                           under ``character``)                 far end (below 0.5: toward 1);
                                                                if the top trait is still on
                                                                top, it is set 0.1 below the
                                                                new top, so the mean absolute
                                                                error is > 0.15 and the top
                                                                trait changes
  dominant_trait           the item's highest trait (the first  the highest trait of the
                           in OCEAN order on a tie)             disagreeing ocean
  capacity_band            ``emotional_capacity`` (top level or another band
                           under ``character``): 1-3 low, 4-7
                           mid, 8-10 high
  support_level            the item's ``support_level``         another value of the enum
  option_kinds             the kinds ordered by where each      two of them swapped
                           ``options.<kind>.dialogue`` first
                           appears in the request (as a JSON
                           string literal)
  reveals_hidden_knowledge false                                true
  score                    the item's ``score``                 at least 0.3 away, in 0..1
  ======================== ==================================== ================================

  A label whose source the item lacks, and every label when no remembered item matches, is
  faked from the schema.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from gen_service.testing.fake_ollama._config import JudgeBehaviour
from gen_service.testing.fake_ollama._schema import SchemaFaker, is_number
from gen_service.testing.fake_ollama._text import sentence

JUDGE_PROPERTIES = frozenset(
    {"authenticity", "consistency", "complexity", "usability", "recommendation"}
)
DIMENSIONS = ("authenticity", "consistency", "complexity", "usability")
LOW_RANGE = (0.30, 0.65)
HIGH_RANGE = (0.75, 0.98)
OCEAN_TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
OPTION_KINDS = ("tone_deaf", "misguided", "growth")
CAPACITY_BANDS = ("low", "mid", "high")
OCEAN_SHIFT = 0.35
SCORE_GAP = 0.3

Labels = Callable[[Mapping[str, Any], bool, SchemaFaker, Mapping[str, Any], str], Any]


def is_judge_format(faker: SchemaFaker, fmt: object) -> bool:
    """Whether a chat's ``format`` asks for a verdict."""
    props = faker.resolve(fmt).get("properties")
    return isinstance(props, Mapping) and set(props) >= JUDGE_PROPERTIES


def verdict(
    faker: SchemaFaker,
    fmt: Mapping[str, Any],
    behaviour: JudgeBehaviour,
    item: Mapping[str, Any] | None,
    request_text: str,
) -> Any:
    """A verdict filling ``fmt`` for the judged ``item`` (None: not remembered)."""
    rng = faker.rng
    value = faker.value(fmt)
    props = faker.resolve(fmt).get("properties")
    if not isinstance(value, dict) or not isinstance(props, Mapping):
        return value
    low = rng.random() < behaviour.low_quality_share
    lo, hi = LOW_RANGE if low else HIGH_RANGE
    for name in DIMENSIONS:
        drawn = round(rng.uniform(lo, hi), 2)
        if _plain(faker, props.get(name), "number") is not None:
            value[name] = drawn
        elif choices := [v for v in _enum(faker, props.get(name)) if is_number(v)]:
            # A grammar-safe schema writes the 0..1 range as an enum of its values.
            value[name] = min(choices, key=lambda v: abs(float(v) - drawn))
    issues = _plain(faker, props.get("issues"), "array")
    text_item = _plain(faker, issues.get("items", {}), "string") if issues is not None else None
    if issues is not None and text_item is not None:
        count = rng.randint(2, 4) if low else rng.randint(0, 2)
        min_items, max_items = issues.get("minItems"), issues.get("maxItems")
        if isinstance(max_items, int):
            count = min(count, max_items)
        if isinstance(min_items, int):
            count = max(count, min_items)
        value["issues"] = [faker.fit_string(text_item, sentence(rng, 5, 12)) for _ in range(count)]
    recommendation = _plain(faker, props.get("recommendation"), "string")
    if recommendation is not None:
        value["recommendation"] = faker.fit_string(recommendation, sentence(rng, 8, 16))
    labels = _plain(faker, props.get("labels"), "object")
    label_props = labels.get("properties") if labels is not None else None
    faked = value.get("labels")
    if item is not None and isinstance(label_props, Mapping) and isinstance(faked, dict):
        disagree = rng.random() < behaviour.label_disagreement_share
        for name, rule in _RULES.items():
            if name in label_props:
                derived = rule(item, disagree, faker, label_props[name], request_text)
                if derived is not None:
                    faked[name] = derived
    return value


def _plain(faker: SchemaFaker, schema: object, kind: str) -> dict[str, Any] | None:
    """``schema`` resolved, or its ``anyOf``/``oneOf`` branch of JSON type ``kind``; None when
    it has none, or when it is a ``const`` or an ``enum`` (left to the faker)."""
    if schema is None:
        return None
    resolved = faker.resolve(schema)
    options = [resolved]
    for key in ("anyOf", "oneOf"):
        branches = resolved.get(key)
        if isinstance(branches, list):
            options += [faker.resolve(b) for b in branches]
    for option in options:
        if "const" in option or "enum" in option:
            continue
        declared = faker.type_of(option)
        if declared == kind or (kind == "number" and declared == "integer"):
            return option
    return None


def _enum(faker: SchemaFaker, schema: object) -> list[Any]:
    resolved = faker.resolve(schema)
    enum = resolved.get("enum")
    if isinstance(enum, list):
        return enum
    for key in ("anyOf", "oneOf"):
        for branch in resolved.get(key) or []:
            found = _enum(faker, branch)
            if found:
                return found
    return []


# --- the label rules: each returns the label, or None to leave the faker's value


def _holders(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    character = item.get("character")
    return [item, character] if isinstance(character, Mapping) else [item]


def _ocean_of(item: Mapping[str, Any]) -> dict[str, float] | None:
    for holder in _holders(item):
        ocean = holder.get("ocean")
        if isinstance(ocean, Mapping) and all(is_number(ocean.get(t)) for t in OCEAN_TRAITS):
            return {t: float(ocean[t]) for t in OCEAN_TRAITS}
    return None


def _top_trait(ocean: Mapping[str, float]) -> str:
    return max(OCEAN_TRAITS, key=lambda t: ocean[t])  # max keeps the first on a tie


def _disagreeing_ocean(ocean: Mapping[str, float]) -> dict[str, float]:
    moved = {
        t: round(min(1.0, v + OCEAN_SHIFT) if v < 0.5 else max(0.0, v - OCEAN_SHIFT), 2)
        for t, v in ocean.items()
    }
    top = _top_trait(ocean)
    if _top_trait(moved) == top:  # every trait was on the same side of 0.5
        moved[top] = round(max(0.0, max(v for t, v in moved.items() if t != top) - 0.1), 2)
    return moved


def _ocean(item: Mapping[str, Any], disagree: bool, *_: Any) -> dict[str, float] | None:
    ocean = _ocean_of(item)
    if ocean is None:
        return None
    return _disagreeing_ocean(ocean) if disagree else ocean


def _dominant_trait(item: Mapping[str, Any], disagree: bool, *_: Any) -> str | None:
    ocean = _ocean(item, disagree)
    return None if ocean is None else _top_trait(ocean)


def _capacity_band(
    item: Mapping[str, Any], disagree: bool, faker: SchemaFaker, *_: Any
) -> str | None:
    for holder in _holders(item):
        capacity = holder.get("emotional_capacity")
        if is_number(capacity):
            band = "low" if capacity <= 3 else "mid" if capacity <= 7 else "high"
            if not disagree:
                return band
            return faker.rng.choice([b for b in CAPACITY_BANDS if b != band])
    return None


def _support_level(
    item: Mapping[str, Any], disagree: bool, faker: SchemaFaker, schema: object, _: str
) -> Any:
    level = item.get("support_level")
    if level is None or not disagree:
        return level
    others = [v for v in _enum(faker, schema) if v != level]
    return faker.rng.choice(others) if others else None


def _option_kinds(
    item: Mapping[str, Any], disagree: bool, faker: SchemaFaker, _: object, request_text: str
) -> list[str] | None:
    options = item.get("options")
    if not isinstance(options, Mapping):
        return None
    where: dict[str, float] = {}
    for kind in OPTION_KINDS:
        option = options.get(kind)
        dialogue = option.get("dialogue") if isinstance(option, Mapping) else None
        if not isinstance(dialogue, str):
            return None
        literals = (json.dumps(dialogue, ensure_ascii=False), json.dumps(dialogue))
        found = [request_text.find(literal) for literal in literals]
        where[kind] = min((f for f in found if f >= 0), default=math.inf)
    kinds = sorted(OPTION_KINDS, key=lambda k: where[k])  # stable: unseen ones keep their order
    if disagree:
        i, j = faker.rng.sample(range(len(kinds)), 2)
        kinds[i], kinds[j] = kinds[j], kinds[i]
    return kinds


def _reveals_hidden_knowledge(_: Mapping[str, Any], disagree: bool, *__: Any) -> bool:
    return disagree


def _score(item: Mapping[str, Any], disagree: bool, faker: SchemaFaker, *_: Any) -> float | None:
    score = item.get("score")
    if not is_number(score) or not 0 <= score <= 1:
        return None
    if not disagree:
        return float(score)
    if score <= 0.5:
        low, high = math.ceil(round((score + SCORE_GAP) * 100, 6)) / 100, 1.0
    else:
        low, high = 0.0, math.floor(round((score - SCORE_GAP) * 100, 6)) / 100
    return min(max(round(faker.rng.uniform(low, high), 2), low), high)


_RULES: dict[str, Labels] = {
    "ocean": _ocean,
    "dominant_trait": _dominant_trait,
    "capacity_band": _capacity_band,
    "support_level": _support_level,
    "option_kinds": _option_kinds,
    "reveals_hidden_knowledge": _reveals_hidden_knowledge,
    "score": _score,
}
