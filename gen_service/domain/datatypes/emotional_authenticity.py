"""Emotional authenticity: how a character with a given emotional capacity responds to someone
who needs them, including the ways a depleted person fails to give support however much they
care. The core of the game's realism (memo priority 1).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from gen_service.domain.content import NAME, TextRule
from gen_service.domain.datatypes._base import (
    CharacterProfile,
    DataTypeSpec,
    ItemContext,
    JudgeSpec,
    LabelResult,
    Pin,
    SampleModel,
    join_prose,
    same_text,
)
from gen_service.domain.datatypes._sampling import (
    OCEAN_SHAPES,
    default_facets,
    describe_ocean,
    rotation,
    sample_name,
    sample_ocean_shape,
    steered_rotation,
)
from gen_service.domain.facets import FacetFile, FacetLibrary

SupportLevel = Literal["none", "minimal", "partial", "full"]
FailureMode = Literal[
    "none",
    "deflection",
    "withdrawal",
    "irritability",
    "over_promising",
    "minimizing",
    "intellectualizing",
    "fixing",
    "self_focus",
    "toxic_positivity",
    "numbness",
]


class EmotionalAuthenticitySample(SampleModel):
    """One character meeting (or failing to meet) another person's emotional need."""

    character: CharacterProfile = Field(description="the character who is asked for support")
    emotional_capacity: int = Field(
        ge=1,
        le=10,
        description=(
            "how much emotional bandwidth the character has right now: 1 = fully depleted, "
            "10 = steady and resourced"
        ),
    )
    capacity_reason: str = Field(
        min_length=1,
        description="what in the character's own life puts their capacity at this level today",
    )
    other_person: str = Field(
        min_length=1,
        description="who needs support and what they are to the character, e.g. 'Ines, his sister'",
    )
    situation: str = Field(
        min_length=1, description="what has happened to the other person, concretely"
    )
    other_person_needs: str = Field(
        min_length=1,
        description="what the other person needs from the character in this moment",
    )
    internal_thought: str = Field(
        min_length=1,
        description="the character's private thoughts as the moment unfolds, in their own voice",
    )
    dialogue: str = Field(min_length=1, description="what the character actually says, verbatim")
    behavior: str = Field(
        min_length=1, description="what the character does: body language, actions, timing"
    )
    support_level: SupportLevel = Field(
        description="how much of the need the character meets; capacity 1-3 is never full"
    )
    failure_mode: FailureMode = Field(
        description="how the support falls short; full support has 'none', no support never does"
    )
    authenticity_notes: str = Field(
        min_length=1,
        description=(
            "why this response is psychologically true for this person at this capacity and "
            "with this personality"
        ),
    )


def check_capacity_support(sample: EmotionalAuthenticitySample) -> list[str]:
    """A depleted character (capacity 1-3) cannot give full support, however much they care."""
    if sample.emotional_capacity <= 3 and sample.support_level == "full":
        return [
            f"capacity_support_mismatch: capacity {sample.emotional_capacity} with full support; "
            "capacity 1-3 gives at most partial support"
        ]
    return []


def check_support_failure(sample: EmotionalAuthenticitySample) -> list[str]:
    """Full support has no failure mode; giving no support at all is a failure of some kind."""
    if sample.support_level == "full" and sample.failure_mode != "none":
        return [
            f"support_failure_mismatch: full support with failure mode {sample.failure_mode}; "
            "full support means failure_mode none"
        ]
    if sample.support_level == "none" and sample.failure_mode == "none":
        return [
            "support_failure_mismatch: no support with failure mode none; name how the "
            "character fails the other person"
        ]
    return []


def check_thought_differs(sample: EmotionalAuthenticitySample) -> list[str]:
    """What the character thinks and what they say must not be the same text."""
    if same_text(sample.internal_thought, sample.dialogue):
        return ["thought_equals_dialogue: internal_thought repeats the dialogue word for word"]
    return []


# Random schema-valid data (what the fake Ollama sends) passes these checks with probability
# about 0.74: capacity is uniform over 1..10, support over 4 levels, failure over 11 modes, so
# P(fail) = P(full) * (P(cap<=3) + P(cap>3) * 10/11) + P(none) * 1/11 ≈ 0.26; random word
# strings are neither placeholders nor identical. tests/domain/test_datatypes.py measures it.
CHECKS = (
    check_capacity_support,
    check_support_failure,
    check_thought_differs,
)

# --- context sampler ------------------------------------------------------------------------

# The situation categories are the quota keys: each line of situations.txt sits under one.
SITUATION_CATEGORIES: tuple[str, ...] = (
    "grief",
    "job_loss",
    "betrayal",
    "illness",
    "celebration",
    "conflict",
    "loneliness",
    "breakup",
    "failure",
    "fear",
    "shame",
    "money_trouble",
    "family_crisis",
    "caregiver_burnout",
    "identity",
)
CapacityBand = Literal["low", "mid", "high"]
CAPACITY_BANDS: tuple[CapacityBand, ...] = ("low", "mid", "high")

SITUATIONS = FacetFile(
    "emotional_authenticity/situations",
    "what has happened to the person who needs support",
    SITUATION_CATEGORIES,
)
OTHER_PEOPLE = FacetFile(
    "emotional_authenticity/other_people", "who the other person is to the character"
)
PLACES = FacetFile("emotional_authenticity/places", "where the moment happens")
CAPACITY_REASONS = FacetFile(
    "emotional_authenticity/capacity_reasons",
    "what in the character's own life sets their capacity today",
    CAPACITY_BANDS,
)
FACET_FILES = (SITUATIONS, OTHER_PEOPLE, PLACES, CAPACITY_REASONS)

_CAPACITY_RANGES = ((1, 3), (4, 7), (8, 10))
_FAILURE_HINTS: tuple[FailureMode, ...] = (
    "deflection",
    "withdrawal",
    "irritability",
    "over_promising",
    "minimizing",
    "intellectualizing",
    "fixing",
    "self_focus",
    "toxic_positivity",
    "numbness",
)
_SHAPES = tuple(OCEAN_SHAPES)


def _situation(text: str, category: str) -> str:
    return f"{text} ({category.replace('_', ' ')})"


def sample_contexts(
    rng: random.Random,
    n: int,
    *,
    facets: FacetLibrary | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[ItemContext]:
    """One brief per item: capacities stratified over low, mid and high with a seed for what
    sets them, situation categories rotated (steered by ``weights``), varied people, places and
    personality shapes, and a failure mode to explore for characters below full strength."""
    lib = facets or default_facets()
    situations = lib.groups(SITUATIONS.name)
    reasons = lib.groups(CAPACITY_REASONS.name)
    ranges = rotation(rng, _CAPACITY_RANGES, n)
    categories = steered_rotation(rng, SITUATION_CATEGORIES, n, weights)
    failures = rotation(rng, _FAILURE_HINTS, n)
    relationships = rotation(rng, lib.items(OTHER_PEOPLE.name), n)
    places = rotation(rng, lib.items(PLACES.name), n)
    shapes = rotation(rng, _SHAPES, n)
    contexts: list[ItemContext] = []
    for span, category, failure, relationship, place, shape in zip(
        ranges, categories, failures, relationships, places, shapes, strict=True
    ):
        capacity = rng.randint(*span)
        situation = rng.choice(situations[category])
        reason = rng.choice(reasons[capacity_band(capacity)])
        name = sample_name(rng, lib)
        ocean = sample_ocean_shape(rng, shape)
        brief: dict[str, str] = {
            "character": name,
            "emotional_capacity": f"{capacity}/10",
            "today_in_their_own_life": reason,
            "personality": describe_ocean(ocean),
            "personality_shape": OCEAN_SHAPES[shape],
            "the_other_person": f"their {relationship}",
            "situation": _situation(situation, category),
            "where": place,
        }
        if capacity <= 6:
            brief["if_they_fall_short_explore"] = failure.replace("_", " ")
        pins = {
            "character.name": Pin.exactly(name),
            "emotional_capacity": Pin.exactly(capacity),
            **{f"character.ocean.{trait}": Pin.exactly(value) for trait, value in ocean.items()},
        }
        contexts.append(ItemContext(facets=brief, quota_key=category, pins=pins))
    return contexts


def categories(facets: FacetLibrary | None = None) -> list[str]:
    """The situation categories: the quota keys."""
    return list(SITUATION_CATEGORIES)


def facet_cells(facets: FacetLibrary | None = None) -> dict[str, list[str]]:
    """Every value the list-drawn facets of a brief can take, as the brief stores it."""
    lib = facets or default_facets()
    return {
        "today_in_their_own_life": list(lib.items(CAPACITY_REASONS.name)),
        "personality_shape": list(OCEAN_SHAPES.values()),
        "the_other_person": [f"their {r}" for r in lib.items(OTHER_PEOPLE.name)],
        "situation": [
            _situation(text, category)
            for category, texts in lib.groups(SITUATIONS.name).items()
            for text in texts
        ],
        "where": list(lib.items(PLACES.name)),
        "if_they_fall_short_explore": [f.replace("_", " ") for f in _FAILURE_HINTS],
    }


def text_for_dedup(sample: EmotionalAuthenticitySample) -> str:
    return join_prose(
        sample.capacity_reason,
        sample.situation,
        sample.other_person_needs,
        sample.internal_thought,
        sample.dialogue,
        sample.behavior,
        sample.authenticity_notes,
    )


TEXT_RULES = {
    "character.name": NAME,
    "other_person": TextRule(min_words=2),
    "capacity_reason": TextRule(min_words=5),
    "situation": TextRule(min_words=5),
    "other_person_needs": TextRule(min_words=4),
    "internal_thought": TextRule(min_words=6),
    "dialogue": TextRule("line", 3),
    "behavior": TextRule(min_words=4),
    "authenticity_notes": TextRule(min_words=8),
}

# --- the judge: capacity band and support level, blind -------------------------------------

_SUPPORT_ORDER: tuple[SupportLevel, ...] = ("none", "minimal", "partial", "full")


class EmotionalJudgeLabels(SampleModel):
    """What the judge reads from the response without seeing the labels."""

    capacity_band: CapacityBand = Field(
        description="the character's emotional capacity as the response shows it: low (1-3), "
        "mid (4-7) or high (8-10)"
    )
    support_level: SupportLevel = Field(
        description="how much of the other person's need the response meets"
    )


def capacity_band(capacity: int) -> CapacityBand:
    return "low" if capacity <= 3 else "mid" if capacity <= 7 else "high"


def judge_blind(payload: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], Any]:
    """The response without its capacity, support level, failure mode and the notes that
    explain them."""
    view = {k: v for k, v in payload.items() if k not in _HIDDEN_FROM_JUDGE}
    return view, None


_HIDDEN_FROM_JUDGE = frozenset(
    {"emotional_capacity", "support_level", "failure_mode", "authenticity_notes"}
)


def judge_agreement(
    sample: EmotionalAuthenticitySample, labels: EmotionalJudgeLabels, key: Any
) -> LabelResult:
    """The same capacity band, and a support level at most one step away."""
    band = capacity_band(sample.emotional_capacity)
    steps = abs(
        _SUPPORT_ORDER.index(sample.support_level) - _SUPPORT_ORDER.index(labels.support_level)
    )
    ok = band == labels.capacity_band and steps <= 1
    agreement = ((band == labels.capacity_band) + (1 - steps / 3)) / 2
    detail = (
        f"capacity band {labels.capacity_band} vs {band}, support {labels.support_level} vs "
        f"{sample.support_level}"
    )
    return LabelResult(round(agreement, 4), ok, "" if ok else detail)


JUDGE = JudgeSpec(blind=judge_blind, labels=EmotionalJudgeLabels, agreement=judge_agreement)

SPEC = DataTypeSpec(
    name="emotional_authenticity",
    title="Emotional authenticity",
    description=(
        "How a character with a given emotional capacity (1-10) responds when someone needs "
        "them. Low capacity means they cannot provide support however much they care; the "
        "sample shows their private thoughts, their words, their behaviour, how much of the "
        "need they meet and the realistic way they fall short."
    ),
    model=EmotionalAuthenticitySample,
    checks=CHECKS,
    sample_contexts=sample_contexts,
    text_for_dedup=text_for_dedup,
    text_rules=TEXT_RULES,
    judge=JUDGE,
    facet_files=FACET_FILES,
    categories=categories,
    facet_cells=facet_cells,
)
