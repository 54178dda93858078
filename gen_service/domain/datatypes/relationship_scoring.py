"""Relationship scoring: a player action, the character's response, and a 0..1 score of what the
interaction does to the relationship, with the rationale and the factors behind it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from gen_service.domain.content import NAME, TextRule
from gen_service.domain.datatypes._base import (
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
    default_facets,
    rotation,
    sample_name,
    steered_choice,
)
from gen_service.domain.facets import FacetFile, FacetLibrary

InteractionType = Literal[
    "comfort",
    "betrayal",
    "gift",
    "joke",
    "apology",
    "refusal",
    "confession",
    "criticism",
    "favor",
    "broken_promise",
    "kept_promise",
    "boundary_setting",
    "flirtation",
    "teasing",
    "lie",
    "sacrifice",
    "standing_up_for_them",
    "forgetting_something_important",
    "unsolicited_advice",
    "sharing_a_secret",
]
FactorEffect = Literal["strengthens", "damages", "mixed"]


class Factor(SampleModel):
    """One thing about the interaction that moves the relationship."""

    factor: str = Field(
        min_length=1, description="what about the interaction matters, specific to these two"
    )
    effect: FactorEffect = Field(
        description="whether this factor strengthens or damages the relationship, or is mixed"
    )


class RelationshipScoringSample(SampleModel):
    """A player action, the character's response, and what it does to the relationship."""

    character_name: str = Field(min_length=1, description="the character's full name")
    relationship_context: str = Field(
        min_length=1,
        description="who the character is to the player, their shared history and current state",
    )
    interaction_type: InteractionType = Field(description="the kind of thing the player does")
    player_action: str = Field(min_length=1, description="what the player says or does, concretely")
    character_response: str = Field(
        min_length=1, description="how the character reacts: words and behaviour"
    )
    factors: list[Factor] = Field(
        min_length=1,
        max_length=6,
        description="1 to 6 factors that decide how the interaction lands",
    )
    rationale: str = Field(
        min_length=1,
        description="why the score is what it is for this character and this history",
    )
    score: float = Field(
        ge=0,
        le=1,
        description=(
            "what the interaction does to the relationship: 0 badly damaged, 0.5 unchanged, "
            "1 much stronger"
        ),
    )


HIGH_SCORE = 0.7
LOW_SCORE = 0.3


def check_score_matches_factors(sample: RelationshipScoringSample) -> list[str]:
    """A high score needs a strengthening factor; a low score needs a damaging one."""
    effects = {f.effect for f in sample.factors}
    if sample.score >= HIGH_SCORE and "strengthens" not in effects:
        return [
            f"score_factor_mismatch: score {sample.score:.2f} but no factor strengthens "
            "the relationship"
        ]
    if sample.score <= LOW_SCORE and "damages" not in effects:
        return [
            f"score_factor_mismatch: score {sample.score:.2f} but no factor damages "
            "the relationship"
        ]
    return []


def check_rationale_differs(sample: RelationshipScoringSample) -> list[str]:
    """The rationale explains the response rather than repeating it."""
    if same_text(sample.rationale, sample.character_response):
        return ["rationale_repeats_response: rationale is the character_response again"]
    return []


def check_factors_differ(sample: RelationshipScoringSample) -> list[str]:
    """No factor is listed twice."""
    seen: list[str] = []
    problems: list[str] = []
    for index, factor in enumerate(sample.factors):
        if any(same_text(factor.factor, earlier) for earlier in seen):
            problems.append(f"factor_repeated: factor {index + 1} repeats an earlier factor")
        seen.append(factor.factor)
    return problems


# Random schema-valid data passes with probability about 0.8: with 1..6 factors of 3 effects,
# P(no "strengthens") averages (1/6) * sum((2/3)^k, k=1..6) ≈ 0.30, so each of the two score
# rules fails 0.3 * 0.30 ≈ 0.09 of samples. tests/domain/test_datatypes.py measures it.
CHECKS = (
    check_score_matches_factors,
    check_rationale_differs,
    check_factors_differ,
)

# --- context sampler ------------------------------------------------------------------------

SCORE_BANDS = (
    "0.00-0.20 (badly damaging)",
    "0.20-0.40 (hurtful)",
    "0.40-0.60 (mixed or neutral)",
    "0.60-0.80 (good)",
    "0.80-1.00 (deeply strengthening)",
)
BAND_RANGES = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
# The bands (indexes into SCORE_BANDS) where each interaction plausibly lands. A thoughtless
# gift or a clumsy comfort can hurt, so most types span the range; a betrayal never deepens trust.
_PLAUSIBLE_BANDS: dict[InteractionType, range] = {
    "comfort": range(5),
    "betrayal": range(2),
    "gift": range(5),
    "joke": range(5),
    "apology": range(5),
    "refusal": range(4),
    "confession": range(5),
    "criticism": range(4),
    "favor": range(1, 5),
    "broken_promise": range(3),
    "kept_promise": range(2, 5),
    "boundary_setting": range(1, 5),
    "flirtation": range(5),
    "teasing": range(5),
    "lie": range(3),
    "sacrifice": range(2, 5),
    "standing_up_for_them": range(2, 5),
    "forgetting_something_important": range(3),
    "unsolicited_advice": range(4),
    "sharing_a_secret": range(1, 5),
}

# Who the character is; how they stand with the player comes from the relationship stages, so
# the roles say nothing about the player (no "the player's oldest friend" among strangers).
CHARACTER_ROLES = FacetFile("relationship_scoring/character_roles", "who the character is")
RELATIONSHIP_STAGES = FacetFile(
    "relationship_scoring/relationship_stages", "how the character stands with the player"
)
FACET_FILES = (CHARACTER_ROLES, RELATIONSHIP_STAGES)
INTERACTION_TYPES: tuple[InteractionType, ...] = tuple(_PLAUSIBLE_BANDS)


def sample_contexts(
    rng: random.Random,
    n: int,
    *,
    facets: FacetLibrary | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[ItemContext]:
    """One brief per item: target score bands spread over 0..1, an interaction type that can
    plausibly land in that band (steered by ``weights`` among those), and varied characters
    and relationship stages."""
    lib = facets or default_facets()
    bands = rotation(rng, range(len(SCORE_BANDS)), n)
    roles = rotation(rng, lib.items(CHARACTER_ROLES.name), n)
    stages = rotation(rng, lib.items(RELATIONSHIP_STAGES.name), n)
    contexts: list[ItemContext] = []
    for band, role, stage in zip(bands, roles, stages, strict=True):
        fitting = [kind for kind, spread in _PLAUSIBLE_BANDS.items() if band in spread]
        interaction = steered_choice(rng, fitting, weights)
        name = sample_name(rng, lib)
        brief = {
            "interaction_type": interaction,
            "target_score": SCORE_BANDS[band],
            "character": name,
            "who_they_are": role,
            "relationship_with_the_player": stage,
        }
        pins = {
            "character_name": Pin.exactly(name),
            "interaction_type": Pin.exactly(interaction),
            "score": Pin.between(*BAND_RANGES[band]),
        }
        contexts.append(ItemContext(facets=brief, quota_key=interaction, pins=pins))
    return contexts


def categories(facets: FacetLibrary | None = None) -> list[str]:
    """The interaction types: the quota keys."""
    return list(INTERACTION_TYPES)


def facet_cells(facets: FacetLibrary | None = None) -> dict[str, list[str]]:
    """Every value the list-drawn facets of a brief can take, as the brief stores it."""
    lib = facets or default_facets()
    return {
        "interaction_type": list(INTERACTION_TYPES),
        "target_score": list(SCORE_BANDS),
        "who_they_are": list(lib.items(CHARACTER_ROLES.name)),
        "relationship_with_the_player": list(lib.items(RELATIONSHIP_STAGES.name)),
    }


def text_for_dedup(sample: RelationshipScoringSample) -> str:
    return join_prose(
        sample.relationship_context,
        sample.player_action,
        sample.character_response,
        sample.rationale,
        *(f.factor for f in sample.factors),
    )


TEXT_RULES = {
    "character_name": NAME,
    "relationship_context": TextRule(min_words=5),
    "player_action": TextRule(min_words=4),
    "character_response": TextRule(min_words=4),
    "factors[].factor": TextRule(min_words=3),
    "rationale": TextRule(min_words=6),
}

# --- the judge: a blind score --------------------------------------------------------------


class RelationshipJudgeLabels(SampleModel):
    """The score the judge gives the interaction without seeing the sample's."""

    score: float = Field(
        ge=0,
        le=1,
        description="what the interaction does to the relationship: 0 badly damaged, 0.5 "
        "unchanged, 1 much stronger",
    )


MAX_SCORE_GAP = 0.15  # the judge agrees when its blind score is this close


def judge_blind(payload: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], Any]:
    """The interaction without its score, the rationale for it, or the factors' effects."""
    view = {k: v for k, v in payload.items() if k not in ("score", "rationale", "factors")}
    view["factors"] = [f["factor"] for f in payload.get("factors", [])]
    return view, None


def judge_agreement(
    sample: RelationshipScoringSample, labels: RelationshipJudgeLabels, key: Any
) -> LabelResult:
    gap = abs(sample.score - labels.score)
    ok = gap <= MAX_SCORE_GAP
    return LabelResult(
        round(1 - gap, 4), ok, "" if ok else f"score {labels.score:.2f} vs {sample.score:.2f}"
    )


JUDGE = JudgeSpec(blind=judge_blind, labels=RelationshipJudgeLabels, agreement=judge_agreement)

SPEC = DataTypeSpec(
    name="relationship_scoring",
    title="Relationship scoring",
    description=(
        "Player-character interactions scored from 0 (badly damaging) to 1 (deeply "
        "strengthening): the relationship's context, what the player does, how the character "
        "responds, the factors that decide how it lands and the rationale for the score, so "
        "the game's model learns what builds and what erodes a relationship."
    ),
    model=RelationshipScoringSample,
    checks=CHECKS,
    sample_contexts=sample_contexts,
    text_for_dedup=text_for_dedup,
    text_rules=TEXT_RULES,
    judge=JUDGE,
    facet_files=FACET_FILES,
    categories=categories,
    facet_cells=facet_cells,
)
