"""Emotional authenticity: how a character with a given emotional capacity responds to someone
who needs them, including the ways a depleted person fails to give support however much they
care. The core of the game's realism (memo priority 1).
"""

from __future__ import annotations

import random
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
    describe_ocean,
    join_prose,
    placeholder_problems,
    rotation,
    same_text,
    sample_name,
    sample_ocean,
)

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
    placeholder_problems,
    check_capacity_support,
    check_support_failure,
    check_thought_differs,
)

# --- context sampler ------------------------------------------------------------------------

SITUATIONS: dict[str, tuple[str, ...]] = {
    "grief": (
        "their father died nine days ago and the funeral is tomorrow",
        "their dog of fourteen years was put down this morning",
        "it is the first anniversary of their sister's death",
    ),
    "job_loss": (
        "they were laid off by video call an hour ago",
        "their small bakery is closing after six years",
        "they were fired for a mistake that was not entirely theirs",
    ),
    "betrayal": (
        "they found out their partner has been lying about money for a year",
        "their closest friend repeated a secret to the whole group",
        "a business partner quietly took their clients",
    ),
    "illness": (
        "they just got a biopsy result that needs more tests",
        "their chronic pain flared and they cancelled their own birthday",
        "their mother was diagnosed with early dementia",
    ),
    "celebration": (
        "they got into the program they had been rejected from twice",
        "they are finally engaged and want someone to be excited with them",
        "their first novel sold, and they are giddy and frightened",
    ),
    "conflict": (
        "they had a screaming fight with their teenage son",
        "their landlord is threatening eviction over a noise complaint",
        "they are being blamed at work for a failed project",
    ),
    "loneliness": (
        "they moved to a new city and have spoken to no one in a week",
        "everyone forgot their birthday",
        "they feel invisible since their friends all had children",
    ),
    "breakup": (
        "their partner of seven years left with a two-line message",
        "they ended a relationship they still love",
        "their ex is already engaged to someone else",
    ),
    "failure": (
        "they failed the bar exam for the second time",
        "their startup's last investor pulled out",
        "they froze on stage during the recital they practised for all year",
    ),
    "fear": (
        "they have a court hearing tomorrow about custody",
        "they are about to have surgery and cannot stop shaking",
        "they think someone has been following them home",
    ),
    "shame": (
        "they relapsed after two years sober",
        "they said something cruel at a family dinner and everyone saw",
        "they were caught cheating on a certification exam",
    ),
    "money_trouble": (
        "their car was repossessed and they cannot get to work",
        "they owe rent in three days and are short by half",
        "their gambling debt just came out",
    ),
    "family_crisis": (
        "their younger brother was arrested last night",
        "their parents announced a divorce after thirty years",
        "their daughter has stopped speaking to them",
    ),
    "caregiver_burnout": (
        "they have looked after their sick father alone for months and just snapped at him",
        "their autistic son had a meltdown in public and strangers filmed it",
        "they have not slept a full night since the twins were born",
    ),
    "identity": (
        "they just came out to their religious parents and it went badly",
        "they were passed over again and suspect it is because of their accent",
        "they realise they chose a career to please their mother and hate it",
    ),
}

RELATIONSHIPS = (
    "older sibling",
    "younger sibling",
    "coworker",
    "ex-partner",
    "neighbour",
    "best friend",
    "parent",
    "adult child",
    "roommate",
    "mentor",
    "new friend",
    "spouse",
    "in-law",
    "teammate",
    "manager",
    "childhood friend",
    "cousin",
    "friend from an online game",
)

WHERE = (
    "a phone call after midnight",
    "a text thread",
    "a hospital car park",
    "the kitchen while dinner burns",
    "a crowded party",
    "the break room at work",
    "a long car drive",
    "a doorstep in the rain",
    "a video call with bad signal",
    "a laundromat",
    "a bench outside a courthouse",
    "the sidelines of a kids' football match",
)

_CAPACITY_BANDS = ((1, 3), (4, 7), (8, 10))
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


def sample_contexts(rng: random.Random, n: int) -> list[ItemContext]:
    """One brief per item: capacities stratified over low, mid and high, varied people and
    situations, and a failure mode to explore for characters below full strength."""
    bands = rotation(rng, _CAPACITY_BANDS, n)
    categories = rotation(rng, tuple(SITUATIONS), n)
    failures = rotation(rng, _FAILURE_HINTS, n)
    relationships = rotation(rng, RELATIONSHIPS, n)
    places = rotation(rng, WHERE, n)
    contexts: list[ItemContext] = []
    for band, category, failure, relationship, place in zip(
        bands, categories, failures, relationships, places, strict=True
    ):
        capacity = rng.randint(*band)
        situation = rng.choice(SITUATIONS[category])
        name = sample_name(rng)
        ocean = sample_ocean(rng)
        facets: dict[str, str] = {
            "character": name,
            "emotional_capacity": f"{capacity}/10",
            "personality": describe_ocean(ocean),
            "the_other_person": f"their {relationship}",
            "situation": f"{situation} ({category.replace('_', ' ')})",
            "where": place,
        }
        if capacity <= 6:
            facets["if_they_fall_short_explore"] = failure.replace("_", " ")
        pins = {
            "character.name": Pin.exactly(name),
            "emotional_capacity": Pin.exactly(capacity),
            **{f"character.ocean.{trait}": Pin.exactly(value) for trait, value in ocean.items()},
        }
        contexts.append(ItemContext(facets=facets, quota_key=category, pins=pins))
    return contexts


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

CapacityBand = Literal["low", "mid", "high"]
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
)
