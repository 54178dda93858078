"""Personality traits: a character's lines in a scenario, labelled with Big Five scores and the
evidence for each, so the game's model learns to read OCEAN traits from dialogue (the largest
data set, memo "foundation").
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from itertools import combinations
from typing import Annotated, Any

from pydantic import Field, ValidatorFunctionWrapHandler, computed_field, model_validator

from gen_service.domain.content import NAME, TextRule
from gen_service.domain.datatypes._base import (
    OCEAN_TRAITS,
    DataTypeSpec,
    ItemContext,
    JudgeSpec,
    LabelResult,
    Ocean,
    OceanTrait,
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

DialogueLine = Annotated[str, Field(min_length=1)]


class TraitEvidence(SampleModel):
    """For each trait, what in the lines shows its level (high or low)."""

    openness: str = Field(min_length=1, description="what in the lines shows the openness level")
    conscientiousness: str = Field(
        min_length=1, description="what in the lines shows the conscientiousness level"
    )
    extraversion: str = Field(
        min_length=1, description="what in the lines shows the extraversion level"
    )
    agreeableness: str = Field(
        min_length=1, description="what in the lines shows the agreeableness level"
    )
    neuroticism: str = Field(
        min_length=1, description="what in the lines shows the neuroticism level"
    )


# ``dominant_trait`` is derived from the labels (the trait with the highest score, the first in
# OCEAN order on a tie), so it can never contradict them: it is not in the schema the model
# fills, but it is in every dump. A stored dump validates again: a ``dominant_trait`` in the
# input is accepted when it names a highest-scoring trait and rejected otherwise.
class PersonalityTraitsSample(SampleModel):
    """A character's lines in one scenario with the Big Five profile they reveal."""

    character_name: str = Field(min_length=1, description="the speaker's full name")
    scenario: str = Field(
        min_length=1, description="the situation the character is in and who they are talking to"
    )
    dialogue: list[DialogueLine] = Field(
        min_length=2,
        max_length=8,
        description="the character's own lines, one string per line, in order",
    )
    evidence: TraitEvidence = Field(
        description="for each of the five traits, the words or choices in the lines that show it"
    )
    ocean: Ocean = Field(
        description="the Big Five scores the lines reveal, 0..1; the dominant trait scores highest"
    )

    @computed_field(description="the trait with the highest score")  # type: ignore[prop-decorator]
    @property
    def dominant_trait(self) -> OceanTrait:
        return top_traits(self.ocean)[0]

    @model_validator(mode="wrap")
    @classmethod
    def _accept_consistent_dominant(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> PersonalityTraitsSample:
        stated = None
        if isinstance(data, Mapping) and "dominant_trait" in data:
            data = dict(data)
            stated = data.pop("dominant_trait")
        sample: PersonalityTraitsSample = handler(data)
        if stated is not None and stated not in top_traits(sample.ocean):
            raise ValueError(
                f"dominant_trait {stated!r} is not the highest-scoring trait "
                f"(highest: {', '.join(top_traits(sample.ocean))})"
            )
        return sample


def top_traits(ocean: Ocean) -> list[OceanTrait]:
    """The traits sharing the highest score, in OCEAN order."""
    scores = ocean.as_dict()
    best = max(scores.values())
    return [trait for trait in OCEAN_TRAITS if scores[trait] == best]


def check_dialogue_lines_differ(sample: PersonalityTraitsSample) -> list[str]:
    """No line of dialogue repeats another."""
    return [
        f"dialogue_repeated: line {j + 1} repeats line {i + 1}"
        for (i, a), (j, b) in combinations(enumerate(sample.dialogue), 2)
        if same_text(a, b)
    ]


def check_evidence_differs(sample: PersonalityTraitsSample) -> list[str]:
    """Each trait gets its own evidence, not one sentence pasted five times."""
    evidence = sample.evidence.model_dump()
    return [
        f"evidence_repeated: {a} and {b} have the same evidence"
        for a, b in combinations(OCEAN_TRAITS, 2)
        if same_text(evidence[a], evidence[b])
    ]


# The dominant trait is derived, so "dominant_trait is the highest label" holds by construction
# (a check on a model-written field would fail 4 in 5 random samples). Random schema-valid data
# passes the remaining checks with probability above 0.9: random lines and evidence rarely
# coincide word for word. tests/domain/test_datatypes.py measures it.
CHECKS = (placeholder_problems, check_dialogue_lines_differ, check_evidence_differs)

# How far a label may sit from the brief's target score: the scores must follow the brief, and
# the judge checks, blind, that the dialogue supports them.
TARGET_TOLERANCE = 0.1


def check_dominant_as_briefed(sample: PersonalityTraitsSample, brief: ItemContext) -> list[str]:
    """The trait the brief made dominant is the one the labels put on top."""
    wanted = brief.facets.get("dominant_trait")
    if wanted is not None and sample.dominant_trait != wanted:
        return [
            f"off_brief: the dominant trait is {sample.dominant_trait}, the brief says {wanted}"
        ]
    return []


# --- context sampler ------------------------------------------------------------------------

SCENARIOS: dict[str, str] = {
    "workplace_pressure": "a deadline, a mistake or a difficult colleague at work",
    "first_meeting": "meeting someone new who matters: a date, a new neighbour or an in-law",
    "group_decision": "a group has to agree on a plan and the character has views",
    "unexpected_change": "plans collapse at the last minute",
    "moral_dilemma": "the character has to choose between honesty and loyalty",
    "creative_project": "the character pitches, defends or abandons something they made",
    "crisis": "an emergency where someone has to take charge",
    "celebration": "a party, a win or a milestone",
    "criticism": "the character receives blunt feedback",
    "travel_mishap": "a lost bag, a missed connection or a wrong turn abroad",
    "family_gathering": "a holiday meal with old tensions",
    "negotiation": "haggling, a raise or a custody schedule",
    "waiting": "a waiting room, a delayed result or a long queue",
    "teaching": "the character explains something to someone who is struggling",
    "confrontation": "someone has crossed a line with the character",
}

# Who they talk to and how old they are vary the voice without contradicting the target scores.
LISTENERS = (
    "a stranger on a train",
    "their boss",
    "their child",
    "a customer",
    "an old friend",
    "a police officer",
    "a doctor",
    "a new neighbour",
    "their sibling",
    "a room of colleagues",
    "a first date",
    "a teacher",
)


def sample_contexts(rng: random.Random, n: int) -> list[ItemContext]:
    """One brief per item: the dominant trait rotated with target scores to match, scenario kinds
    and listeners rotated, ages spread."""
    dominants = rotation(rng, OCEAN_TRAITS, n)
    scenarios = rotation(rng, tuple(SCENARIOS), n)
    listeners = rotation(rng, LISTENERS, n)
    contexts: list[ItemContext] = []
    for dominant, scenario, listener in zip(dominants, scenarios, listeners, strict=True):
        profile = sample_ocean(rng, high=dominant)
        name = sample_name(rng)
        facets = {
            "character": name,
            "age": rng.randint(16, 84),
            "scenario_kind": f"{SCENARIOS[scenario]} ({scenario.replace('_', ' ')})",
            "talking_to": listener,
            "dominant_trait": dominant,
            "target_scores": describe_ocean(profile),
        }
        if scenario == "first_meeting":
            del facets["talking_to"]  # the scenario itself says who they meet
        pins = {
            "character_name": Pin.exactly(name),
            **{
                f"ocean.{trait}": Pin.between(
                    max(0.0, value - TARGET_TOLERANCE), min(1.0, value + TARGET_TOLERANCE)
                )
                for trait, value in profile.items()
            },
        }
        contexts.append(ItemContext(facets=facets, quota_key=dominant, pins=pins))
    return contexts


def text_for_dedup(sample: PersonalityTraitsSample) -> str:
    evidence = sample.evidence
    return join_prose(
        sample.scenario,
        *sample.dialogue,
        evidence.openness,
        evidence.conscientiousness,
        evidence.extraversion,
        evidence.agreeableness,
        evidence.neuroticism,
    )


TEXT_RULES = {
    "character_name": NAME,
    "scenario": TextRule(min_words=6),
    "dialogue[]": TextRule("line", 2),
    **{f"evidence.{trait}": TextRule(min_words=4) for trait in OCEAN_TRAITS},
}

# --- the judge: OCEAN from the dialogue alone ----------------------------------------------


class PersonalityJudgeLabels(SampleModel):
    """The Big Five profile the judge reads from the scenario and the lines alone."""

    ocean: Ocean = Field(description="the Big Five scores the lines reveal, 0..1 each")
    dominant_trait: OceanTrait = Field(description="the trait the lines show most strongly")


# The judge agrees when its blind scores are this close on average and it names the same top.
MAX_MEAN_ERROR = 0.15


def judge_blind(payload: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], Any]:
    """Only who speaks, the scenario and the lines: no scores, no evidence (it names them)."""
    view = {k: payload[k] for k in ("character_name", "scenario", "dialogue")}
    return view, None


def judge_agreement(
    sample: PersonalityTraitsSample, labels: PersonalityJudgeLabels, key: Any
) -> LabelResult:
    """Mean absolute error of the five scores within 0.15 and the same dominant trait."""
    ours, theirs = sample.ocean.as_dict(), labels.ocean.as_dict()
    error = sum(abs(ours[t] - theirs[t]) for t in OCEAN_TRAITS) / len(OCEAN_TRAITS)
    same_top = sample.dominant_trait == labels.dominant_trait
    ok = error <= MAX_MEAN_ERROR and same_top
    detail = f"OCEAN mean error {error:.2f}" + (
        "" if same_top else f", dominant {labels.dominant_trait} vs {sample.dominant_trait}"
    )
    return LabelResult(round(max(0.0, 1.0 - error), 4), ok, "" if ok else detail)


JUDGE = JudgeSpec(blind=judge_blind, labels=PersonalityJudgeLabels, agreement=judge_agreement)

SPEC = DataTypeSpec(
    name="personality_traits",
    title="Personality traits",
    description=(
        "A character's own lines in a concrete scenario, labelled with Big Five (OCEAN) scores "
        "from 0 to 1 and the evidence in the lines for each score, so the game's model learns "
        "to infer personality from dialogue. The dominant trait is the highest score."
    ),
    model=PersonalityTraitsSample,
    checks=CHECKS,
    sample_contexts=sample_contexts,
    text_for_dedup=text_for_dedup,
    text_rules=TEXT_RULES,
    brief_checks=(check_dominant_as_briefed,),
    judge=JUDGE,
)
