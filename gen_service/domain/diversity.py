"""Diversity, measured (pure): how varied a day's accepted samples of one data type are, and how
their labels compare with what the type's sampler aims for.

Four figures per data type (:func:`measure`):

- **distinct-2**: distinct word bigrams / all word bigrams of the type's main text (its
  ``text_for_dedup``), bigrams taken within each sample. It falls as a corpus grows, so it is
  computed over at most :data:`DISTINCT_CAP` samples (evenly spaced in commit order): days stay
  comparable.
- **openings**: the ten most common openings (first three words, lowercased; fewer when the
  text is shorter) of each free-text field (:func:`~gen_service.domain.content.free_text_keys`;
  name fields are left out, the sampler picks names). A list field (``dialogue[]``) counts each
  of its items. A stock opening that covers a large share of a field shows a prompt habit.
- **facet coverage**: a *cell* is a value of the brief's ``quota_key`` combined with one second
  categorical facet of the brief, per type: emotional authenticity x capacity band, dramatic
  irony x tension target, personality traits x scenario kind, tension building x payoff timing,
  relationship scoring x score band (``diversity_design.SECOND_FACET``). The cells that exist
  are those the type's sampler produces (found by drawing ``DESIGN_DRAWS`` briefs from it with a
  fixed seed, so enlarged facet lists are picked up without code here) plus any seen in the
  stored briefs; a cell is filled when at least one accepted sample's brief falls in it. The same is
  reported for the quota keys alone. A brief without the second facet (a sampler that renamed
  it) counts for its quota key only.
- **label distributions**: per label (OCEAN per trait, capacity bands, support levels, irony and
  tension scores, technique, payoff timing, interaction types, relationship score bands, the
  dominant trait) a histogram of the accepted samples' values beside the *designed* one: the
  distribution of the sampler's pin on the same field over the drawn briefs (an exact pin counts
  in its bin, a range spreads evenly over the bins it overlaps). Their total variation distance
  (half the summed absolute differences of the shares, 0 same .. 1 disjoint) says how far the
  labels drift from the design. A label that no brief pins (support level) has no design.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from gen_service.domain.content import free_text_keys, string_fields, value_at, words_of
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._base import DataTypeSpec
from gen_service.domain.diversity_design import (
    LABELS,
    SECOND_FACET,
    Design,
    LabelSpec,
    bin_index,
    cell_of,
    design_of,
    point_bin,
    spread,
)

DISTINCT_CAP = 1000  # samples per type and day that distinct-2 is computed over
TOP_OPENINGS = 10
OPENING_WORDS = 3
MAX_MISSING = 12  # unfilled cells listed by name

__all__ = [
    "DISTINCT_CAP",
    "LABELS",
    "Coverage",
    "Design",
    "Diversity",
    "FieldOpenings",
    "LabelDistribution",
    "LabelSpec",
    "Opening",
    "cell_of",
    "coverage",
    "design_of",
    "distinct_n",
    "evenly_spaced",
    "field_openings",
    "label_distribution",
    "main_text",
    "measure",
    "opening",
    "parse_json",
    "point_bin",
    "spread",
    "top_openings",
    "total_variation",
]


# -- the figures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opening:
    words: str  # the first three words, lowercased
    count: int
    share: float  # of the field's texts


@dataclass(frozen=True, slots=True)
class FieldOpenings:
    field: str  # the rule key, e.g. "dialogue[]"
    texts: int
    top: tuple[Opening, ...]


@dataclass(frozen=True, slots=True)
class Coverage:
    quota_filled: int
    quota_cells: int
    cells_filled: int
    cells: int
    second_facet: str | None  # what the quota key is combined with
    missing: tuple[str, ...]  # unfilled cells, at most MAX_MISSING

    @property
    def quota_share(self) -> float | None:
        return self.quota_filled / self.quota_cells if self.quota_cells else None

    @property
    def cell_share(self) -> float | None:
        return self.cells_filled / self.cells if self.cells else None


@dataclass(frozen=True, slots=True)
class LabelDistribution:
    label: str  # e.g. "ocean.openness", "capacity_band"
    title: str
    bins: tuple[str, ...]
    observed: tuple[int, ...]
    designed: tuple[float, ...] | None  # shares summing to 1; None: no brief sets it
    distance: float | None  # total variation distance of the shares

    @property
    def total(self) -> int:
        return sum(self.observed)


@dataclass(frozen=True, slots=True)
class Diversity:
    datatype: str
    samples: int  # accepted samples measured
    unreadable: int  # payloads that no longer validate (left out of distinct-2)
    distinct_2: float | None
    distinct_samples: int  # how many samples distinct-2 is over
    openings: tuple[FieldOpenings, ...]
    coverage: Coverage
    labels: tuple[LabelDistribution, ...]


# -- pure metrics ------------------------------------------------------------------------------


def distinct_n(texts: Iterable[str], n: int = 2) -> float | None:
    """Distinct word n-grams / all word n-grams, n-grams taken within each text; None when the
    texts hold no n-gram at all."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = words_of(text)
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else None


def opening(text: str, words: int = OPENING_WORDS) -> str:
    """The first ``words`` words of ``text``, lowercased ("" for a text without words)."""
    return " ".join(words_of(text)[:words])


def top_openings(texts: Sequence[str], top: int = TOP_OPENINGS) -> tuple[Opening, ...]:
    """The ``top`` most common openings, most common first (ties alphabetical)."""
    counts = Counter(o for o in (opening(t) for t in texts) if o)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return tuple(Opening(words, n, n / len(texts)) for words, n in ranked)


def evenly_spaced(items: Sequence[Any], cap: int) -> list[Any]:
    """At most ``cap`` of ``items``, evenly spaced, first one included."""
    if len(items) <= cap:
        return list(items)
    step = len(items) / cap
    return [items[int(i * step)] for i in range(cap)]


def total_variation(observed: Sequence[int], designed: Sequence[float]) -> float | None:
    """Half the summed absolute differences of the observed shares and the designed shares."""
    total = sum(observed)
    if not total:
        return None
    return 0.5 * sum(abs(o / total - d) for o, d in zip(observed, designed, strict=True))


# -- measuring one type ------------------------------------------------------------------------


def measure(
    datatype: str,
    payloads: Sequence[Mapping[str, Any]],
    briefs: Sequence[Mapping[str, Any] | None],
    *,
    design: Design | None = None,
) -> Diversity:
    """The diversity figures of one type's accepted samples (payloads and their briefs, in
    commit order); ``design`` defaults to :func:`design_of` the type."""
    design = design if design is not None else design_of(datatype)
    spec = REGISTRY.get(datatype)
    texts: list[str] = []
    unreadable = 0
    if spec is not None:
        for payload in evenly_spaced(payloads, DISTINCT_CAP):
            text = main_text(spec, payload)
            if text is None:
                unreadable += 1
            else:
                texts.append(text)
    return Diversity(
        datatype=datatype,
        samples=len(payloads),
        unreadable=unreadable,
        distinct_2=distinct_n(texts, 2),
        distinct_samples=len(texts),
        openings=field_openings(spec, payloads) if spec is not None else (),
        coverage=coverage(datatype, briefs, design),
        labels=tuple(
            label_distribution(label, payloads, design.labels.get(label.label))
            for label in LABELS.get(datatype, ())
        ),
    )


def main_text(spec: DataTypeSpec, payload: Mapping[str, Any]) -> str | None:
    """The type's ``text_for_dedup`` of a stored payload; None when it no longer validates."""
    try:
        return spec.text_for_dedup(spec.model.model_validate(payload))
    except ValidationError:
        return None


@lru_cache(maxsize=16)
def _opening_fields(datatype: str) -> tuple[str, ...]:
    spec = REGISTRY[datatype]
    names = {key for key, rule in spec.text_rules.items() if rule.kind == "name"}
    schema = spec.model.model_json_schema(mode="serialization")
    return tuple(k for k in free_text_keys(schema) if k not in names)


def field_openings(
    spec: DataTypeSpec, payloads: Sequence[Mapping[str, Any]]
) -> tuple[FieldOpenings, ...]:
    """The most common openings of each free-text field (names left out), in schema order."""
    fields = _opening_fields(spec.name)
    texts: dict[str, list[str]] = {key: [] for key in fields}
    for payload in payloads:
        for _, key, text in string_fields(payload):
            if key in texts:
                texts[key].append(text)
    return tuple(FieldOpenings(key, len(texts[key]), top_openings(texts[key])) for key in fields)


def coverage(datatype: str, briefs: Sequence[Mapping[str, Any] | None], design: Design) -> Coverage:
    """Quota keys and cells filled by the briefs, over those the design and the briefs hold."""
    filled_quota: set[str] = set()
    filled_cells: set[str] = set()
    for brief in briefs:
        if not brief:
            continue
        quota, cell = cell_of(datatype, brief)
        if quota is not None:
            filled_quota.add(quota)
        if cell is not None:
            filled_cells.add(cell)
    all_quota = design.quota_keys | filled_quota
    all_cells = design.cells | filled_cells
    second = SECOND_FACET.get(datatype)
    return Coverage(
        quota_filled=len(filled_quota),
        quota_cells=len(all_quota),
        cells_filled=len(filled_cells),
        cells=len(all_cells),
        second_facet=second[0] if second is not None else None,
        missing=tuple(sorted(all_cells - filled_cells)[:MAX_MISSING]),
    )


def label_distribution(
    label: LabelSpec, payloads: Sequence[Mapping[str, Any]], designed: Sequence[float] | None
) -> LabelDistribution:
    """The histogram of one label over the payloads, beside its designed shares."""
    if label.numeric:
        bins = list(label.names)
        counts = [0] * len(bins)
        for payload in payloads:
            value = value_at(payload, label.path)
            if isinstance(value, int | float) and not isinstance(value, bool):
                index = bin_index(float(value), label.edges)
                if index is not None:
                    counts[index] += 1
        design = list(designed) if designed is not None else None
    else:
        observed = Counter(
            str(v) for v in (value_at(p, label.path) for p in payloads) if v is not None
        )
        bins = list(label.names) + sorted(set(observed) - set(label.names))
        counts = [observed.get(b, 0) for b in bins]
        design = None
        if designed is not None:
            design = list(designed) + [0.0] * (len(bins) - len(designed))
    return LabelDistribution(
        label=label.label,
        title=label.title,
        bins=tuple(bins),
        observed=tuple(counts),
        designed=None if design is None else tuple(round(d, 4) for d in design),
        distance=None if design is None else _rounded(total_variation(counts, design)),
    )


def parse_json(text: str | None) -> dict[str, Any] | None:
    """A stored JSON object, or None for NULL or text that is not one."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
