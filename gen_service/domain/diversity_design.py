"""What a data type's sampler aims for (pure), for :mod:`.diversity`: the labels measured per
type and where their design comes from, the second facet that makes a coverage cell, and the
design itself, learnt by drawing briefs from the sampler with a fixed seed (so facet lists
that grow, in code or in data files, are picked up without a change here)."""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, get_args

from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._base import OCEAN_TRAITS
from gen_service.domain.datatypes.emotional_authenticity import SupportLevel
from gen_service.domain.datatypes.relationship_scoring import InteractionType
from gen_service.domain.datatypes.tension_building import PayoffTiming, Technique

DESIGN_DRAWS = 3000  # briefs drawn from a sampler to learn its cells and designed labels
DESIGN_SEED = 20240601


# -- binning -----------------------------------------------------------------------------------


def spread(low: float, high: float, edges: Sequence[float]) -> list[float]:
    """How a value drawn evenly from [low, high] falls into the bins between ``edges`` (the
    last bin includes its upper edge): the share per bin."""
    if high <= low:
        return point_bin(low, edges)
    shares = []
    for a, b in itertools.pairwise(edges):
        shares.append(max(0.0, min(high, b) - max(low, a)) / (high - low))
    return shares


def point_bin(value: float, edges: Sequence[float]) -> list[float]:
    """1 in the bin of ``value`` between ``edges`` (the last bin includes its upper edge)."""
    shares = [0.0] * (len(edges) - 1)
    index = bin_index(value, edges)
    if index is not None:
        shares[index] = 1.0
    return shares


def bin_index(value: float, edges: Sequence[float]) -> int | None:
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        if a <= value < b or (i == len(edges) - 2 and value == b):
            return i
    return None


# -- what to measure per type ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """One label of a data type: where it sits in a sample, how it is binned, and where the
    design comes from (a pin on the same path, or a brief facet)."""

    label: str
    title: str
    path: str  # dotted path in the payload, also the pin's path
    edges: tuple[float, ...] = ()  # numeric: bin edges
    names: tuple[str, ...] = ()  # numeric: bin names; categorical: the declared categories
    design_facet: str | None = None  # the design comes from this facet instead of a pin
    designed: bool = True  # False: no brief sets it

    @property
    def numeric(self) -> bool:
        return bool(self.edges)


_FIFTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
_FIFTH_NAMES = ("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0")
_CAPACITY_EDGES = (1.0, 4.0, 8.0, 10.0)
_CAPACITY_NAMES = ("low 1-3", "mid 4-7", "high 8-10")


def _ocean(prefix: str) -> tuple[LabelSpec, ...]:
    return tuple(
        LabelSpec(f"ocean.{t}", f"OCEAN {t}", f"{prefix}{t}", _FIFTHS, _FIFTH_NAMES)
        for t in OCEAN_TRAITS
    )


def _capacity(path: str) -> LabelSpec:
    return LabelSpec("capacity_band", "Emotional capacity band", path, _CAPACITY_EDGES,
                     _CAPACITY_NAMES)  # fmt: skip


LABELS: Mapping[str, tuple[LabelSpec, ...]] = {
    "emotional_authenticity": (
        *_ocean("character.ocean."),
        _capacity("emotional_capacity"),
        LabelSpec("support_level", "Support level", "support_level",
                  names=get_args(SupportLevel), designed=False),
    ),
    "dramatic_irony": (
        *_ocean("character.ocean."),
        _capacity("character.emotional_capacity"),
        LabelSpec("tension", "Irony tension", "tension", _FIFTHS, _FIFTH_NAMES),
    ),
    "personality_traits": (
        *_ocean("ocean."),
        LabelSpec("dominant_trait", "Dominant trait", "dominant_trait", names=OCEAN_TRAITS,
                  design_facet="dominant_trait"),
    ),
    "tension_building": (
        LabelSpec("technique", "Technique", "technique", names=get_args(Technique)),
        LabelSpec("payoff_timing", "Payoff timing", "payoff_timing",
                  names=get_args(PayoffTiming)),
        LabelSpec("tension", "Tension", "tension", _FIFTHS, _FIFTH_NAMES),
    ),
    "relationship_scoring": (
        LabelSpec("interaction_type", "Interaction type", "interaction_type",
                  names=get_args(InteractionType)),
        LabelSpec("score_band", "Relationship score band", "score", _FIFTHS, _FIFTH_NAMES),
    ),
}  # fmt: skip


def _capacity_band(brief: Mapping[str, Any]) -> str | None:
    value = _pin_const(brief, "emotional_capacity")
    if not isinstance(value, int | float):
        return None
    index = bin_index(float(value), _CAPACITY_EDGES)
    return None if index is None else _CAPACITY_NAMES[index]


def _pin_range(path: str) -> Callable[[Mapping[str, Any]], str | None]:
    def read(brief: Mapping[str, Any]) -> str | None:
        pin = _pins(brief).get(path)
        if not isinstance(pin, Mapping):
            return None
        if "const" in pin:
            return str(pin["const"])
        if pin.get("min") is None or pin.get("max") is None:
            return None
        return f"{float(pin['min']):.2f}-{float(pin['max']):.2f}"

    return read


def _pin_value(path: str) -> Callable[[Mapping[str, Any]], str | None]:
    def read(brief: Mapping[str, Any]) -> str | None:
        value = _pin_const(brief, path)
        return None if value is None else str(value)

    return read


_PAREN = re.compile(r"\(([^()]+)\)\s*$")


def _facet_kind(name: str) -> Callable[[Mapping[str, Any]], str | None]:
    """A facet's category: the trailing "(…)" of its text when it has one, else the text."""

    def read(brief: Mapping[str, Any]) -> str | None:
        value = _facets(brief).get(name)
        if value is None:
            return None
        match = _PAREN.search(str(value))
        return (match.group(1) if match else str(value)).strip().replace(" ", "_")

    return read


# The facet combined with the quota key to make a cell: (its name, how to read it off a brief).
SECOND_FACET: Mapping[str, tuple[str, Callable[[Mapping[str, Any]], str | None]]] = {
    "emotional_authenticity": ("capacity band", _capacity_band),
    "dramatic_irony": ("tension target", _pin_range("tension")),
    "personality_traits": ("scenario kind", _facet_kind("scenario")),
    "tension_building": ("payoff timing", _pin_value("payoff_timing")),
    "relationship_scoring": ("score band", _pin_range("score")),
}


def _pins(brief: Mapping[str, Any]) -> Mapping[str, Any]:
    pins = brief.get("pins")
    return pins if isinstance(pins, Mapping) else {}


def _facets(brief: Mapping[str, Any]) -> Mapping[str, Any]:
    facets = brief.get("facets")
    return facets if isinstance(facets, Mapping) else {}


def _pin_const(brief: Mapping[str, Any], path: str) -> Any:
    pin = _pins(brief).get(path)
    return pin.get("const") if isinstance(pin, Mapping) else None


def cell_of(datatype: str, brief: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(quota key, cell) of a brief; either is None when the brief does not say."""
    quota = brief.get("quota_key") or None
    quota = None if quota is None else str(quota)
    second = SECOND_FACET.get(datatype)
    value = second[1](brief) if second is not None and quota is not None else None
    return quota, (f"{quota} x {value}" if value is not None else None)


# -- the design: what the sampler produces ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Design:
    quota_keys: frozenset[str]
    cells: frozenset[str]
    labels: Mapping[str, tuple[float, ...]]  # label -> designed shares over its bins


@lru_cache(maxsize=16)
def design_of(datatype: str, draws: int = DESIGN_DRAWS) -> Design:
    """What the type's sampler aims for, from ``draws`` briefs drawn with a fixed seed."""
    spec = REGISTRY.get(datatype)
    if spec is None:
        return Design(frozenset(), frozenset(), {})
    briefs = [c.to_json() for c in spec.sample_contexts(random.Random(DESIGN_SEED), draws)]
    quota_keys: set[str] = set()
    cells: set[str] = set()
    for brief in briefs:
        quota, cell = cell_of(datatype, brief)
        if quota is not None:
            quota_keys.add(quota)
        if cell is not None:
            cells.add(cell)
    labels: dict[str, tuple[float, ...]] = {}
    for spec_label in LABELS.get(datatype, ()):
        shares = _designed_shares(spec_label, briefs)
        if shares is not None:
            labels[spec_label.label] = shares
    return Design(frozenset(quota_keys), frozenset(cells), labels)


def _designed_shares(
    label: LabelSpec, briefs: Sequence[Mapping[str, Any]]
) -> tuple[float, ...] | None:
    if not label.designed:
        return None
    names = list(label.names)
    sums = [0.0] * (len(label.edges) - 1 if label.numeric else len(names))
    counted = 0
    for brief in briefs:
        if label.design_facet is not None:
            value: Any = _facets(brief).get(label.design_facet)
            pin: Mapping[str, Any] | None = None if value is None else {"const": value}
        else:
            found = _pins(brief).get(label.path)
            pin = found if isinstance(found, Mapping) else None
        if pin is None:
            continue
        if label.numeric:
            if "const" in pin and isinstance(pin["const"], int | float):
                shares = point_bin(float(pin["const"]), label.edges)
            elif pin.get("min") is not None and pin.get("max") is not None:
                shares = spread(float(pin["min"]), float(pin["max"]), label.edges)
            else:
                continue
            sums = [s + x for s, x in zip(sums, shares, strict=True)]
        else:
            category = str(pin.get("const"))
            if category not in names:
                continue  # a category the schema does not declare: not part of the design
            sums[names.index(category)] += 1
        counted += 1
    if not counted:
        return None
    return tuple(s / counted for s in sums)
