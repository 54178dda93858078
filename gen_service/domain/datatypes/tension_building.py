"""Tension building: how a scene creates suspense by giving the player part of something and
owing them the rest (incomplete revelation, contradictory behaviour, information debt,
foreshadowing), and when it pays off.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Literal

from pydantic import Field

from gen_service.domain.content import TextRule, leaked_share, salient_words
from gen_service.domain.datatypes._base import (
    DataTypeSpec,
    ItemContext,
    Pin,
    SampleModel,
    jaccard,
    join_prose,
    same_text,
)
from gen_service.domain.datatypes._sampling import (
    default_facets,
    rotation,
    sample_name,
    steered_rotation,
)
from gen_service.domain.facets import FacetFile, FacetLibrary

Technique = Literal[
    "incomplete_revelation", "contradictory_behavior", "information_debt", "foreshadowing"
]
PayoffTiming = Literal["immediate", "short", "medium", "long"]


class TensionBuildingSample(SampleModel):
    """One suspense beat: what is shown, what is held back, and how it pays off."""

    technique: Technique = Field(
        description=(
            "incomplete_revelation (part of a truth shown), contradictory_behavior (a character "
            "acts against what we know of them), information_debt (the story owes the player an "
            "answer), foreshadowing (an early hint of a later event)"
        )
    )
    setup: str = Field(min_length=1, description="the scene and characters, concretely")
    revealed: str = Field(min_length=1, description="what the player is shown or told")
    withheld: str = Field(
        min_length=1, description="what is deliberately held back, and who holds it"
    )
    player_question: str = Field(
        min_length=1, description="the question the player is left asking, in their words"
    )
    suspense_analysis: str = Field(
        min_length=1, description="why this gap creates suspense for this player at this moment"
    )
    payoff: str = Field(
        min_length=1, description="how and when the withheld part is finally delivered"
    )
    payoff_timing: PayoffTiming = Field(
        description=(
            "when the payoff lands: immediate (same scene), short (within a scene or two), "
            "medium (later in the chapter), long (acts later)"
        )
    )
    tension: float = Field(ge=0, le=1, description="how much suspense the beat creates, 0..1")


NEAR_SAME = 0.8
# A hint only foreshadows if the event comes later; a debt paid in the same scene was never owed.
_DEFERRED_TECHNIQUES = ("foreshadowing", "information_debt")


def check_revealed_vs_withheld(sample: TensionBuildingSample) -> list[str]:
    """What is shown and what is held back are different things."""
    if same_text(sample.revealed, sample.withheld):
        return ["revealed_equals_withheld: revealed and withheld are the same text"]
    if jaccard(sample.revealed, sample.withheld) >= NEAR_SAME:
        return ["revealed_equals_withheld: revealed and withheld are nearly the same text"]
    return []


def check_payoff_delivers(sample: TensionBuildingSample) -> list[str]:
    """The payoff delivers something new, not the revelation again."""
    if same_text(sample.payoff, sample.revealed):
        return ["payoff_repeats_revealed: the payoff only restates what was revealed"]
    return []


def check_technique_timing(sample: TensionBuildingSample) -> list[str]:
    """Foreshadowing and information debt cannot pay off immediately."""
    if sample.technique in _DEFERRED_TECHNIQUES and sample.payoff_timing == "immediate":
        return [
            f"technique_timing_mismatch: {sample.technique} with an immediate payoff; "
            "it needs a short, medium or long delay"
        ]
    return []


# A leak: at least this share of the withheld part's salient words (those not already in the
# setup), and at least LEAK_WORDS of them, in what is revealed or in the player's question.
LEAK_SHARE = 0.5
LEAK_WORDS = 3


def check_withheld_stays_hidden(sample: TensionBuildingSample) -> list[str]:
    """What is withheld does not show up in what is revealed or in the player's question."""
    secret = salient_words(sample.withheld, ignore=frozenset(salient_words(sample.setup)))
    problems: list[str] = []
    for field in ("revealed", "player_question"):
        text = getattr(sample, field)
        if field == "revealed" and jaccard(text, sample.withheld) >= NEAR_SAME:
            continue  # the same text: revealed_equals_withheld says so
        share = leaked_share(secret, text)
        if share >= LEAK_SHARE and share * len(secret) >= LEAK_WORDS:
            problems.append(f"leak_withheld: {field} gives away {share:.0%} of what is withheld")
    return problems


# Random schema-valid data passes with probability about 0.87: only the technique/timing rule
# bites (P = 2/4 techniques * 1/4 timings = 0.125); random word strings are neither the same nor
# 80% overlapping. tests/domain/test_datatypes.py measures it.
CHECKS = (
    check_revealed_vs_withheld,
    check_payoff_delivers,
    check_technique_timing,
    check_withheld_stays_hidden,
)

TENSION_TOLERANCE = 0.1  # how far the tension score may sit from the brief's target

# --- context sampler ------------------------------------------------------------------------

TECHNIQUES: tuple[Technique, ...] = (
    "incomplete_revelation",
    "contradictory_behavior",
    "information_debt",
    "foreshadowing",
)
_TIMINGS: dict[Technique, tuple[PayoffTiming, ...]] = {
    "incomplete_revelation": ("immediate", "short", "medium", "long"),
    "contradictory_behavior": ("immediate", "short", "medium", "long"),
    "information_debt": ("short", "medium", "long"),
    "foreshadowing": ("short", "medium", "long"),
}

GENRES = FacetFile("tension_building/genres", "the genre of the story a beat belongs to")
SUBJECTS = FacetFile("tension_building/subjects", "what a suspense beat is built around")
FACET_FILES = (GENRES, SUBJECTS)


def sample_contexts(
    rng: random.Random,
    n: int,
    *,
    facets: FacetLibrary | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[ItemContext]:
    """One brief per item: techniques rotated (steered by ``weights``), payoff timings fitting
    each technique, genres and subjects varied."""
    lib = facets or default_facets()
    techniques = steered_rotation(rng, TECHNIQUES, n, weights)
    genres = rotation(rng, lib.items(GENRES.name), n)
    subjects = rotation(rng, lib.items(SUBJECTS.name), n)
    contexts: list[ItemContext] = []
    for technique, genre, subject in zip(techniques, genres, subjects, strict=True):
        timing = rng.choice(_TIMINGS[technique])
        tension = round(rng.uniform(0.45, 0.95), 2)
        brief = {
            "technique": technique,
            "payoff_timing": timing,
            "genre": genre,
            "built_around": subject,
            "a_character_named": sample_name(rng, lib),
            "target_tension": f"{tension:.2f}",
        }
        pins = {
            "technique": Pin.exactly(technique),
            "payoff_timing": Pin.exactly(timing),
            "tension": Pin.between(
                max(0.0, tension - TENSION_TOLERANCE), min(1.0, tension + TENSION_TOLERANCE)
            ),
        }
        contexts.append(ItemContext(facets=brief, quota_key=technique, pins=pins))
    return contexts


def categories(facets: FacetLibrary | None = None) -> list[str]:
    """The four techniques: the quota keys."""
    return list(TECHNIQUES)


def facet_cells(facets: FacetLibrary | None = None) -> dict[str, list[str]]:
    """Every value the list-drawn facets of a brief can take, as the brief stores it."""
    lib = facets or default_facets()
    return {
        "technique": list(TECHNIQUES),
        "payoff_timing": sorted({t for timings in _TIMINGS.values() for t in timings}),
        "genre": list(lib.items(GENRES.name)),
        "built_around": list(lib.items(SUBJECTS.name)),
    }


def text_for_dedup(sample: TensionBuildingSample) -> str:
    return join_prose(
        sample.setup,
        sample.revealed,
        sample.withheld,
        sample.player_question,
        sample.suspense_analysis,
        sample.payoff,
    )


TEXT_RULES = {
    "setup": TextRule(min_words=6),
    "revealed": TextRule(min_words=4),
    "withheld": TextRule(min_words=4),
    "player_question": TextRule(min_words=3),
    "suspense_analysis": TextRule(min_words=8),
    "payoff": TextRule(min_words=5),
}

SPEC = DataTypeSpec(
    name="tension_building",
    title="Tension building",
    description=(
        "Suspense beats for the game's narrator: a technique (incomplete revelation, "
        "contradictory behaviour, information debt or foreshadowing), what is revealed, what "
        "is withheld, the question the player is left with, why it creates suspense, and how "
        "and when it pays off."
    ),
    model=TensionBuildingSample,
    checks=CHECKS,
    sample_contexts=sample_contexts,
    text_for_dedup=text_for_dedup,
    text_rules=TEXT_RULES,
    facet_files=FACET_FILES,
    categories=categories,
    facet_cells=facet_cells,
)
