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
    join_prose,
    text_key,
)
from gen_service.domain.datatypes._sampling import (
    DOMINANT_LEADS,
    default_facets,
    describe_ocean,
    rotation,
    sample_dominant_profile,
    sample_name,
    steered_rotation,
)
from gen_service.domain.facets import FacetFile, FacetLibrary

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
    keys = [text_key(line) for line in sample.dialogue]  # same_text, each line read once
    return [
        f"dialogue_repeated: line {j + 1} repeats line {i + 1}"
        for (i, a), (j, b) in combinations(enumerate(keys), 2)
        if a == b
    ]


def check_evidence_differs(sample: PersonalityTraitsSample) -> list[str]:
    """Each trait gets its own evidence, not one sentence pasted five times."""
    evidence = sample.evidence
    keys = {trait: text_key(getattr(evidence, trait)) for trait in OCEAN_TRAITS}
    return [
        f"evidence_repeated: {a} and {b} have the same evidence"
        for a, b in combinations(OCEAN_TRAITS, 2)
        if keys[a] == keys[b]
    ]


# The dominant trait is derived, so "dominant_trait is the highest label" holds by construction
# (a check on a model-written field would fail 4 in 5 random samples). Random schema-valid data
# passes the remaining checks with probability above 0.9: random lines and evidence rarely
# coincide word for word. tests/domain/test_datatypes.py measures it.
CHECKS = (check_dialogue_lines_differ, check_evidence_differs)

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

SCENARIO_KINDS: tuple[str, ...] = (
    "workplace_pressure",
    "first_meeting",
    "group_decision",
    "unexpected_change",
    "moral_dilemma",
    "creative_project",
    "crisis",
    "celebration",
    "criticism",
    "travel_mishap",
    "family_gathering",
    "negotiation",
    "waiting",
    "teaching",
    "confrontation",
)
SCENARIOS = FacetFile(
    "personality_traits/scenarios", "a concrete scenario the character speaks in", SCENARIO_KINDS
)
# Who they talk to and how old they are vary the voice without contradicting the target scores.
LISTENERS = FacetFile("personality_traits/listeners", "who the character is talking to")
FACET_FILES = (SCENARIOS, LISTENERS)
_LEADS = tuple(DOMINANT_LEADS)


def _scenario(text: str, kind: str) -> str:
    return f"{text} ({kind.replace('_', ' ')})"


# How the brief words each band of DOMINANT_LEADS; the exact margin is in the target scores.
LEAD_WORDS: Mapping[str, str] = {
    "slight": "slight: only just above the next trait",
    "modest": "modest: a little above the next trait",
    "clear": "clear: plainly above the next trait",
    "strong": "strong: well above every other trait",
    "overwhelming": "overwhelming: it defines the character",
}


def score_pins(profile: Mapping[OceanTrait, float], dominant: OceanTrait) -> dict[str, Pin]:
    """Each trait pinned within TARGET_TOLERANCE of its target, except where that would let
    another trait reach the dominant one: then the gap between the dominant trait and the
    runner-up is split, so every score the pins allow keeps the dominant trait strictly on top
    (check_dominant_as_briefed can always be met)."""
    cents = {trait: round(value * 100) for trait, value in profile.items()}
    tol = round(TARGET_TOLERANCE * 100)
    top = cents[dominant]
    runner_up = max(v for t, v in cents.items() if t != dominant)
    margin = top - runner_up
    if margin < 2:
        raise ValueError(f"{dominant} leads by {margin / 100:.2f}; pins need at least 0.02")
    floor = max(top - tol, runner_up + (margin + 1) // 2)  # the dominant's lowest score
    pins: dict[str, Pin] = {}
    for trait, value in cents.items():
        if trait == dominant:
            low, high = floor, min(100, value + tol)
        else:
            low, high = max(0, value - tol), min(value + tol, floor - 1)
        pins[f"ocean.{trait}"] = Pin.between(low / 100, high / 100)
    return pins


def sample_contexts(
    rng: random.Random,
    n: int,
    *,
    facets: FacetLibrary | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[ItemContext]:
    """One brief per item: the dominant trait rotated (steered by ``weights``) with a lead over
    the next trait rotated from slight to overwhelming, target scores to match, concrete
    scenarios of rotated kinds, listeners rotated, ages spread."""
    lib = facets or default_facets()
    scenarios = lib.groups(SCENARIOS.name)
    dominants = steered_rotation(rng, OCEAN_TRAITS, n, weights)
    leads = rotation(rng, _LEADS, n)
    kinds = rotation(rng, SCENARIO_KINDS, n)
    listeners = rotation(rng, lib.items(LISTENERS.name), n)
    contexts: list[ItemContext] = []
    for dominant, lead, kind, listener in zip(dominants, leads, kinds, listeners, strict=True):
        profile = sample_dominant_profile(rng, dominant, lead)
        name = sample_name(rng, lib)
        brief = {
            "character": name,
            "age": rng.randint(16, 84),
            "scenario": _scenario(rng.choice(scenarios[kind]), kind),
            "talking_to": listener,
            "dominant_trait": dominant,
            "dominant_lead": LEAD_WORDS[lead],
            "target_scores": describe_ocean(profile),
        }
        if kind == "first_meeting":
            del brief["talking_to"]  # the scenario itself says who they meet
        pins = {"character_name": Pin.exactly(name), **score_pins(profile, dominant)}
        contexts.append(ItemContext(facets=brief, quota_key=dominant, pins=pins))
    return contexts


def categories(facets: FacetLibrary | None = None) -> list[str]:
    """The five traits, as the dominant one: the quota keys."""
    return list(OCEAN_TRAITS)


def facet_cells(facets: FacetLibrary | None = None) -> dict[str, list[str]]:
    """Every value the list-drawn facets of a brief can take, as the brief stores it."""
    lib = facets or default_facets()
    return {
        "scenario": [
            _scenario(text, kind)
            for kind, texts in lib.groups(SCENARIOS.name).items()
            for text in texts
        ],
        "talking_to": list(lib.items(LISTENERS.name)),
        "dominant_trait": list(OCEAN_TRAITS),
        "dominant_lead": [LEAD_WORDS[lead] for lead in DOMINANT_LEADS],
    }


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
    facet_files=FACET_FILES,
    categories=categories,
    facet_cells=facet_cells,
)
