"""Facet lists: the concrete material a brief is sampled from, and quota steering (pure).

The lists are text files a game writer edits without touching code (``prompts/facets/``, its
README says how): one item per line, ``#`` comments, and ``[category]`` headings in the files
whose items are grouped (situations by category, irony truths by knowledge-gap kind, capacity
reasons by band). Each data type declares the files it reads as :class:`FacetFile` entries;
:func:`parse_facet_file` checks one file's text and :class:`FacetLibrary` holds them all.
Reading the files is the adapter's job (:mod:`gen_service.adapters.facet_files`).

:func:`steer` turns the accepted samples per quota key into sampling weights that favour the
categories furthest below an even share.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from gen_service.domain.content import STOCK_PHRASES
from gen_service.errors import ConfigError

COMMENT = "#"
MAX_ITEM_CHARS = 200
_HEADING = re.compile(r"^\[\s*([^\]]*?)\s*\]$")
_PLAIN = ""  # the one group of a file without headings


@dataclass(frozen=True, slots=True)
class FacetFile:
    """One facet file a data type reads.

    ``name`` is its path under ``prompts/facets/`` without ``.txt``
    (``emotional_authenticity/situations``); ``about`` says what a line is, for errors and the
    README; ``categories`` are the ``[headings]`` the file must hold, each with at least one
    line (None: a plain list without headings)."""

    name: str
    about: str
    categories: tuple[str, ...] | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.txt"


@dataclass(frozen=True, slots=True)
class FacetList:
    """The items of one facet file, by category (a plain list has the one category "")."""

    name: str
    groups: Mapping[str, tuple[str, ...]]
    # Every brief draws from it (names: twice a brief), so it is joined once.
    _items: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = tuple(item for group in self.groups.values() for item in group)
        object.__setattr__(self, "_items", items)

    @property
    def items(self) -> tuple[str, ...]:
        """Every item, in file order."""
        return self._items


class FacetLibrary:
    """Every facet list, by file name (``tension_building/subjects``)."""

    def __init__(self, lists: Iterable[FacetList]) -> None:
        self._lists: dict[str, FacetList] = {facet.name: facet for facet in lists}

    def __repr__(self) -> str:
        return f"FacetLibrary({', '.join(sorted(self._lists))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FacetLibrary) and other._lists == self._lists

    __hash__ = None  # type: ignore[assignment]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._lists))

    def items(self, name: str) -> tuple[str, ...]:
        """Every item of the file ``name``."""
        return self._get(name).items

    def groups(self, name: str) -> Mapping[str, tuple[str, ...]]:
        """The items of the file ``name`` by category heading."""
        return self._get(name).groups

    def sizes(self) -> dict[str, int]:
        """How many items each file holds."""
        return {name: len(self._lists[name].items) for name in self.names}

    def _get(self, name: str) -> FacetList:
        try:
            return self._lists[name]
        except KeyError:
            raise KeyError(
                f"no facet list {name!r} in this library; it has: {', '.join(self.names)}"
            ) from None


def parse_facet_file(spec: FacetFile, text: str, where: str) -> FacetList:
    """The items of one facet file, checked: no empty list or category, no duplicate line, no
    unknown category, no stock phrase. ``where`` names the file in the errors, which also give
    the line number: ``ConfigError("prompts/facets/x.txt:12: ...")``."""
    grouped = spec.categories is not None
    groups: dict[str, list[str]] = {} if grouped else {_PLAIN: []}
    heading_line: dict[str, int] = {}
    seen: dict[str, int] = {}  # normalised item -> its line
    current: str | None = None if grouped else _PLAIN

    def fail(number: int, problem: str) -> ConfigError:
        return ConfigError(f"facet file {where}:{number}: {problem}", path=where)

    for number, raw in enumerate(text.splitlines(), start=1):
        line = " ".join(raw.split())
        if not line or line.startswith(COMMENT):
            continue
        heading = _HEADING.match(line)
        if heading is not None:
            category = heading.group(1)
            if not grouped:
                raise fail(
                    number,
                    f"[{category}] is a category heading, but this file is a plain list of "
                    f"{spec.about}: remove the heading",
                )
            assert spec.categories is not None
            if category not in spec.categories:
                raise fail(
                    number,
                    f"unknown category [{category}]; this file's categories are "
                    f"{', '.join(f'[{c}]' for c in spec.categories)}",
                )
            if category in heading_line:
                raise fail(
                    number,
                    f"[{category}] appears twice (first on line {heading_line[category]}): "
                    "keep one heading per category",
                )
            heading_line[category] = number
            groups[category] = []
            current = category
            continue
        if current is None:
            assert spec.categories is not None
            raise fail(
                number,
                f"{line[:40]!r} comes before any category heading: put it under one of "
                f"{', '.join(f'[{c}]' for c in spec.categories)}",
            )
        problem = _item_problem(line)
        if problem:
            raise fail(number, problem)
        key = line.casefold().rstrip(".")
        if key in seen:
            raise fail(number, f"duplicate line: {line!r} is already on line {seen[key]}")
        seen[key] = number
        groups[current].append(line)

    if grouped:
        assert spec.categories is not None
        missing = [c for c in spec.categories if c not in groups]
        if missing:
            raise ConfigError(
                f"facet file {where}: no {', '.join(f'[{c}]' for c in missing)} "
                f"heading; every category needs a heading with at least one line of "
                f"{spec.about}",
                path=where,
            )
        for category in spec.categories:
            if not groups[category]:
                raise fail(
                    heading_line[category],
                    f"[{category}] has no items: add at least one line of {spec.about}",
                )
        ordered = {c: tuple(groups[c]) for c in spec.categories}
    else:
        if not groups[_PLAIN]:
            raise ConfigError(
                f"facet file {where} holds no items: add {spec.about}, one per line",
                path=where,
            )
        ordered = {_PLAIN: tuple(groups[_PLAIN])}
    return FacetList(spec.name, MappingProxyType(ordered))


def _item_problem(line: str) -> str:
    if len(line) > MAX_ITEM_CHARS:
        return (
            f"the line is {len(line)} characters long; a facet is a short phrase of at most "
            f"{MAX_ITEM_CHARS}: shorten it or split it in two"
        )
    if ";" in line:
        return "';' separates a brief's facets in the prompt: use a comma or a dash instead"
    lowered = line.casefold()
    for phrase in STOCK_PHRASES:
        if phrase in lowered:
            return (
                f"uses the stock phrase {phrase!r}, which the content checks reject in samples: "
                "say it concretely"
            )
    return ""


# --- quota steering ----------------------------------------------------------------------------

# How many coming samples a shortfall is spread over: big enough that a category a few samples
# behind is nudged rather than flooded, small enough that an empty category catches up within
# a few hours of a type's production.
STEER_HORIZON = 500
# The least weight, as a fraction of an even share, that a category ahead of its share keeps:
# it is still written now and then, so its facets stay in the mix.
STEER_EPSILON = 0.02


def steer(
    categories: Sequence[str],
    counts: Mapping[str, int],
    *,
    horizon: int = STEER_HORIZON,
    epsilon: float = STEER_EPSILON,
) -> dict[str, float]:
    """Sampling weights (summing to 1) that favour the categories furthest below an even share.

    ``counts`` are the accepted samples per category so far (keys not in ``categories`` are
    ignored). Each category's weight is its shortfall against an even share of the samples so
    far plus the next ``horizon``: ``max(ε, (N + H) / k - count)``, normalised. So even counts
    give even weights, a category far behind gets most of the next samples, and one far ahead
    keeps the small weight ``epsilon / k``."""
    k = len(categories)
    if k == 0:
        return {}
    if horizon <= 0:
        raise ValueError(f"horizon must be positive, got {horizon}")
    have = [max(0, int(counts.get(category, 0))) for category in categories]
    fair = (sum(have) + horizon) / k
    shortfall = [max(0.0, fair - h) for h in have]
    total = sum(shortfall)  # > 0: the shortfalls add up to at least the horizon
    raw = [max(epsilon / k, s / total) for s in shortfall]
    norm = sum(raw)
    return {category: w / norm for category, w in zip(categories, raw, strict=True)}


def is_even(weights: Mapping[str, float] | None, options: Sequence[str]) -> bool:
    """Whether ``weights`` give every option the same weight (None: no steering, so yes)."""
    if not weights:
        return True
    values = [weights.get(option, 0.0) for option in options]
    return max(values) - min(values) <= 1e-12 * max(max(values), 1e-300)
