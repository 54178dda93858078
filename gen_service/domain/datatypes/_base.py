"""What every data type module provides, and the pieces they share.

A data type is one module under ``domain/datatypes/`` exporting ``SPEC: DataTypeSpec``; the
registry in ``__init__`` lists them. Adding a sixth type is one new file and one registry line.

Shared here: the OCEAN sub-model and character profile several types embed and the check
helpers (placeholder detection, text similarity); the sampling helpers the context samplers
use are in ``_sampling.py``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gen_service.domain.content import TextRule, string_leaves
from gen_service.domain.facets import FacetFile, FacetLibrary

# A check takes one validated sample and returns the problems it found (empty: passes).
Check = Callable[[Any], list[str]]

T = TypeVar("T")
S = TypeVar("S", bound=str)


class SampleModel(BaseModel):
    """Base of every sample model: strict about unknown keys, immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Pin:
    """What a brief fixes about one field of the sample: an exact value, or a numeric range.

    Pins are said twice: in the request's schema (``const``, ``minimum``/``maximum``), so
    constrained decoding cannot miss them, and by the adherence check, for backends that ignore
    schemas."""

    const: Any = None
    low: float | None = None
    high: float | None = None

    @classmethod
    def exactly(cls, value: Any) -> Pin:
        return cls(const=value)

    @classmethod
    def between(cls, low: float, high: float) -> Pin:
        return cls(low=round(low, 2), high=round(high, 2))

    def to_json(self) -> dict[str, Any]:
        if self.const is not None:
            return {"const": self.const}
        return {"min": self.low, "max": self.high}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pin:
        if "const" in data:
            return cls(const=data["const"])
        return cls(low=data.get("min"), high=data.get("max"))


@dataclass(frozen=True, slots=True)
class ItemContext:
    """The sampled brief for one item of a batch: what the prompt asks this item to be about.

    ``facets`` are short key/value pairs rendered into the prompt (e.g. capacity=3,
    situation="a friend's job loss"); ``quota_key`` names the category a quota can steer;
    ``pins`` map a field path of the sample (``character.ocean.openness``) to what the brief
    fixes about it. Stored with every sample as its provenance (:meth:`to_json`)."""

    facets: Mapping[str, Any]
    quota_key: str = ""
    pins: Mapping[str, Pin] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "facets": dict(self.facets),
            "quota_key": self.quota_key,
            "pins": {path: pin.to_json() for path, pin in self.pins.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ItemContext:
        return cls(
            facets=dict(data.get("facets", {})),
            quota_key=str(data.get("quota_key", "")),
            pins={p: Pin.from_json(v) for p, v in dict(data.get("pins", {})).items()},
        )


# A brief check takes a sample and the brief it was written from.
BriefCheck = Callable[[Any, ItemContext], list[str]]


@dataclass(frozen=True, slots=True)
class LabelResult:
    """How the judge's blind labels compare with the sample's: ``agreement`` 0..1, ``ok``
    when they agree well enough, ``detail`` saying where they differ."""

    agreement: float
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    """How the judge sees a data type (domain/judging.py).

    ``blind(payload, rng)`` returns the view the judge is shown, with the label fields hidden
    (and, e.g., the irony options shuffled), and a key to what was hidden; ``labels`` is the
    model of the labels the judge re-derives (None: the type has none); ``agreement(sample,
    labels, key)`` compares them with the sample's own."""

    blind: Callable[[dict[str, Any], random.Random], tuple[dict[str, Any], Any]]
    labels: type[SampleModel] | None = None
    agreement: Callable[[Any, Any, Any], LabelResult] | None = None


def hide(payload: Mapping[str, Any], *paths: str) -> dict[str, Any]:
    """A copy of ``payload`` without the dotted ``paths`` (a blind view for the judge)."""
    out: dict[str, Any] = {k: v for k, v in payload.items()}
    for path in paths:
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                node = {}
                break
            node[key] = dict(child)
            node = node[key]
        node.pop(leaf, None)
    return out


class Sampler(Protocol):
    """A data type's context sampler: ``n`` briefs drawn from ``facets`` (None: the shipped
    lists), the steered facet weighted by ``weights`` (quota key -> weight, from
    :func:`~gen_service.domain.facets.steer`; None or even: plain rotation). Deterministic for
    a given ``rng`` state, library and weights."""

    def __call__(
        self,
        rng: random.Random,
        n: int,
        *,
        facets: FacetLibrary | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[ItemContext]: ...


class CategoriesOf(Protocol):
    """The quota keys a sampler can produce from a facet library (None: the shipped one): the
    cells that quotas steer and coverage counts."""

    def __call__(self, facets: FacetLibrary | None = None) -> list[str]: ...


class FacetCellsOf(Protocol):
    """Per facet of the brief (its key in ``ItemContext.facets``), every value the sampler can
    write there, exactly as the brief stores it: the denominators of facet coverage. Facets
    drawn from numbers (capacities, scores, ages, names) are left out."""

    def __call__(self, facets: FacetLibrary | None = None) -> dict[str, list[str]]: ...


def _no_categories(facets: FacetLibrary | None = None) -> list[str]:
    return []


def _no_cells(facets: FacetLibrary | None = None) -> dict[str, list[str]]:
    return {}


@dataclass(frozen=True, slots=True)
class DataTypeSpec:
    name: str  # registry key, e.g. "emotional_authenticity"
    title: str  # human name, e.g. "Emotional authenticity"
    description: str  # one paragraph: what a sample teaches the game's model
    model: type[SampleModel]  # one sample
    # The type's own generation-time checks beyond the schema; every type's samples are also
    # checked for placeholders and free-text content (checking.check).
    checks: Sequence[Check]
    sample_contexts: Sampler  # one brief per item
    text_for_dedup: Callable[[Any], str]  # the prose a near-duplicate check compares
    # Content rules of free-text fields that differ from "prose, 3 words" (see domain/content).
    text_rules: Mapping[str, TextRule] = field(default_factory=dict)
    # Adherence beyond the pins: what the brief asked that one field cannot say.
    brief_checks: Sequence[BriefCheck] = ()
    # How the judge sees it; None: the whole sample, no labels.
    judge: JudgeSpec | None = None
    # The facet files under prompts/facets/ its sampler reads (names are shared by all types).
    facet_files: Sequence[FacetFile] = ()
    # The quota keys its sampler can produce, e.g. the situation categories.
    categories: CategoriesOf = _no_categories
    # Every value of each list-drawn facet of its briefs, as stored (for coverage reports).
    facet_cells: FacetCellsOf = _no_cells


# --- shared sub-models ----------------------------------------------------------------------

OceanTrait = Literal[
    "openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"
]
OCEAN_TRAITS: tuple[OceanTrait, ...] = (
    "openness",
    "conscientiousness",
    "extraversion",
    "agreeableness",
    "neuroticism",
)


class Ocean(SampleModel):
    """Big Five personality profile, each trait from 0 (very low) to 1 (very high)."""

    openness: float = Field(
        ge=0, le=1, description="curiosity, imagination, appetite for the new (0 low, 1 high)"
    )
    conscientiousness: float = Field(
        ge=0, le=1, description="order, discipline, reliability (0 low, 1 high)"
    )
    extraversion: float = Field(
        ge=0, le=1, description="sociability, talkativeness, energy from others (0 low, 1 high)"
    )
    agreeableness: float = Field(
        ge=0, le=1, description="warmth, trust, wish to keep the peace (0 low, 1 high)"
    )
    neuroticism: float = Field(
        ge=0, le=1, description="anxiety, moodiness, sensitivity to stress (0 low, 1 high)"
    )

    def as_dict(self) -> dict[OceanTrait, float]:
        return {trait: float(getattr(self, trait)) for trait in OCEAN_TRAITS}


class CharacterProfile(SampleModel):
    """A character: a name and a Big Five profile."""

    name: str = Field(min_length=1, description="the character's full name")
    ocean: Ocean = Field(description="the character's Big Five personality profile, 0..1 each")


# --- check helpers --------------------------------------------------------------------------

# Whole strings that are a stand-in, not content (compared lowercased, trailing punctuation off).
_PLACEHOLDER_STRINGS = frozenset(
    {
        "todo",
        "tbd",
        "tba",
        "n/a",
        "string",
        "example",
        "sample",
        "placeholder",
        "text",
        "xxx",
        "xxxx",
        "lorem ipsum",
        "name",
        "null",
        "undefined",
        "unknown",
        "etc",
        "same as above",
        "see above",
    }
)
# Stand-ins inside longer text. Plain words like "example" are only flagged as the whole string:
# "for example" is ordinary prose.
_PLACEHOLDER_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\blorem ipsum\b", re.IGNORECASE), "lorem ipsum"),
    (re.compile(r"\[\s*insert\b[^\]]*\]", re.IGNORECASE), "an [insert ...] slot"),
    (
        re.compile(r"\[\s*(?:name|character|your|placeholder|x+)\b[^\]]*\]", re.IGNORECASE),
        "a [...] slot",
    ),
    (re.compile(r"<\s*[a-z][a-z _-]{0,30}>", re.IGNORECASE), "a <...> slot"),
    (re.compile(r"\{\{[^}]*\}\}"), "a {{...}} template slot"),
    (re.compile(r"\b(?:TODO|TBD|FIXME)\b"), "a TODO/TBD marker"),
)
# Any of them, in one pass: most strings hold none, and only those that hold one are searched
# pattern by pattern (the first in order names the finding).
_ANY_PLACEHOLDER = re.compile(
    "|".join(
        f"(?i:{p.pattern})" if p.flags & re.IGNORECASE else f"(?:{p.pattern})"
        for p, _ in _PLACEHOLDER_PATTERNS
    )
)
_HAS_WORD = re.compile(r"\w")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def placeholder_problems(sample: BaseModel) -> list[str]:
    """Every string in ``sample`` that is empty, whitespace, punctuation only or a placeholder."""
    return placeholder_problems_of(sample.model_dump(mode="json"))


def placeholder_problems_of(
    payload: Any, leaves: list[tuple[str, str, str]] | None = None
) -> list[str]:
    """:func:`placeholder_problems` of a sample's JSON dump (the check reuses the dump it
    has); ``leaves`` is :func:`~gen_service.domain.content.string_leaves` of it, when known."""
    problems: list[str] = []
    if leaves is None:
        leaves = string_leaves(payload)
    stripped_all = [text.strip() for _, _, text in leaves]
    # One search over every string, each on its own line: a stand-in found in one string is
    # found there too (a line break is no word character, as a string's ends are none, for
    # the patterns' \b), so when it finds none no string is searched alone.
    may_hold = _ANY_PLACEHOLDER.search("\n".join(stripped_all)) is not None
    for (path, _, _), stripped in zip(leaves, stripped_all, strict=True):
        if not stripped:
            problems.append(f"empty_string: {path} is empty")
            continue
        if not _HAS_WORD.search(stripped):
            problems.append(f"placeholder: {path} is only punctuation ({stripped[:20]!r})")
            continue
        if stripped.lower().rstrip(".!?:;,").strip() in _PLACEHOLDER_STRINGS:
            problems.append(f"placeholder: {path} is a placeholder ({stripped[:20]!r})")
            continue
        if not may_hold or _ANY_PLACEHOLDER.search(stripped) is None:
            continue
        for pattern, what in _PLACEHOLDER_PATTERNS:
            if pattern.search(stripped):
                problems.append(f"placeholder: {path} holds {what}")
                break
    return problems


def words(text: str) -> set[str]:
    """The set of lowercased words in ``text`` (punctuation dropped, apostrophes kept)."""
    return {w.casefold() for w in _WORD.findall(text)}


def jaccard(a: str, b: str) -> float:
    """Word-set Jaccard similarity of two texts, 0 (disjoint) .. 1 (same words)."""
    wa, wb = words(a), words(b)
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def same_text(a: str, b: str) -> bool:
    """Whether two texts are the same once case, spacing and punctuation are ignored."""
    return text_key(a) == text_key(b)


def text_key(text: str) -> tuple[str, ...]:
    """What :func:`same_text` compares: equal keys, the same text. Compute it once per text
    when comparing many pairs."""
    return tuple(_WORD.findall(text.casefold()))


def join_prose(*parts: str) -> str:
    """Prose fields joined for near-duplicate comparison."""
    return "\n".join(part.strip() for part in parts if part.strip())
