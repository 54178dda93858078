"""Dramatic irony: the player knows something a character does not, and the character must
answer anyway. One scenario holds exactly three responses (tone-deaf, misguided, growth); export
can flatten it into three training examples.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from itertools import combinations
from typing import Any, Literal

from pydantic import Field

from gen_service.domain.content import NAME, TextRule, leaked_share, salient_words
from gen_service.domain.datatypes._base import (
    CharacterProfile,
    DataTypeSpec,
    ItemContext,
    JudgeSpec,
    LabelResult,
    Pin,
    SampleModel,
    jaccard,
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


class IronyCharacter(CharacterProfile):
    """The character who is missing the crucial information."""

    emotional_capacity: int = Field(
        ge=1,
        le=10,
        description="the character's emotional bandwidth right now: 1 depleted, 10 resourced",
    )


class _OptionText(SampleModel):
    dialogue: str = Field(min_length=1, description="what the character says, verbatim")
    internal_reasoning: str = Field(
        min_length=1,
        description="why the character, knowing only what they know, chooses these words",
    )
    consequence: str = Field(
        min_length=1,
        description="what this response sets in motion, as the player (who knows more) sees it",
    )


# The delta bounds overlap but lean apart: a tone-deaf remark can land well in the moment and
# growth can cost something now, yet growth never scores below tone-deaf (a check enforces it).
class ToneDeafOption(_OptionText):
    """The character blunders on, unaware, saying what hurts most given what the player knows."""

    relationship_delta: float = Field(
        ge=-1,
        le=0.5,
        description="net change in the relationship, -1 (wrecked) .. 0.5; usually negative",
    )


class MisguidedOption(_OptionText):
    """The character means well but acts on their wrong picture of the situation."""

    relationship_delta: float = Field(
        ge=-1, le=1, description="net change in the relationship, -1 (wrecked) .. 1 (much closer)"
    )


class GrowthOption(_OptionText):
    """The character senses something is off and responds with openness despite not knowing."""

    relationship_delta: float = Field(
        ge=-0.5,
        le=1,
        description="net change in the relationship, -0.5 .. 1 (much closer); usually positive",
    )


class IronyOptions(SampleModel):
    """Exactly three responses, one of each kind, each genuinely different."""

    tone_deaf: ToneDeafOption = Field(
        description="oblivious response that makes the player wince given what they know"
    )
    misguided: MisguidedOption = Field(
        description="well-meant response built on the character's false picture"
    )
    growth: GrowthOption = Field(
        description="response where the character reads between the lines and does better"
    )


class DramaticIronySample(SampleModel):
    """A scene where the player knows what the character does not, with three responses."""

    setting: str = Field(min_length=1, description="where and when the scene takes place")
    character: IronyCharacter = Field(description="the character who does not know")
    player_knows: str = Field(
        min_length=1, description="the fact the player has learned, concretely"
    )
    character_doesnt_know: str = Field(
        min_length=1, description="what the character is unaware of or wrong about"
    )
    why_unknown: str = Field(
        min_length=1,
        description="why the character has no way of knowing it yet (who hid it, how, why)",
    )
    knowledge_gap: str = Field(
        min_length=1,
        description=(
            "what the gap makes the scene mean: why the player wants to shout at the screen"
        ),
    )
    tension: float = Field(
        ge=0, le=1, description="how strongly the gap pulls at the player, 0 flat .. 1 unbearable"
    )
    options: IronyOptions = Field(
        description="the three ways the character can respond: tone_deaf, misguided, growth"
    )


SIMILARITY_LIMIT = 0.6


def check_options_differ(sample: DramaticIronySample) -> list[str]:
    """The three dialogues are genuinely different lines, not rewordings of one."""
    problems: list[str] = []
    dialogues = {
        "tone_deaf": sample.options.tone_deaf.dialogue,
        "misguided": sample.options.misguided.dialogue,
        "growth": sample.options.growth.dialogue,
    }
    for (name_a, a), (name_b, b) in combinations(dialogues.items(), 2):
        if same_text(a, b):
            problems.append(f"options_identical: {name_a} and {name_b} have the same dialogue")
        elif (similarity := jaccard(a, b)) >= SIMILARITY_LIMIT:
            problems.append(
                f"options_too_similar: {name_a} and {name_b} dialogues share "
                f"{similarity:.0%} of their words (limit {SIMILARITY_LIMIT:.0%})"
            )
    return problems


def check_growth_not_worse(sample: DramaticIronySample) -> list[str]:
    """Growth never leaves the relationship worse off than the tone-deaf response."""
    growth = sample.options.growth.relationship_delta
    tone_deaf = sample.options.tone_deaf.relationship_delta
    if growth < tone_deaf:
        return [
            f"delta_order: growth relationship_delta {growth:+.2f} is below "
            f"tone_deaf's {tone_deaf:+.2f}"
        ]
    return []


# A leak: at least this share of the player-only fact's salient words, and at least LEAK_WORDS of
# them, in one option's dialogue or reasoning (the setting's words are public and do not count).
LEAK_SHARE = 0.5
LEAK_WORDS = 3


def check_no_leak(sample: DramaticIronySample) -> list[str]:
    """The character never says or reasons with what only the player knows."""
    secret = salient_words(sample.player_knows, ignore=frozenset(salient_words(sample.setting)))
    secret -= {w.casefold() for w in sample.character.name.split()}
    problems: list[str] = []
    for kind in ("tone_deaf", "misguided", "growth"):
        option = getattr(sample.options, kind)
        for field in ("dialogue", "internal_reasoning"):
            text = getattr(option, field)
            share = leaked_share(secret, text)
            if share >= LEAK_SHARE and share * len(secret) >= LEAK_WORDS:
                problems.append(
                    f"leak_player_knowledge: options.{kind}.{field} uses {share:.0%} of what "
                    "only the player knows"
                )
    return problems


# Random schema-valid data passes with probability about 0.75: the delta bounds make
# P(growth < tone_deaf) = P(both in the shared [-0.5, 0.5]) / 2 = (2/3)^2 / 2 ≈ 0.22, and random
# word strings rarely share 60% of their words. tests/domain/test_datatypes.py measures it.
CHECKS = (check_options_differ, check_growth_not_worse, check_no_leak)

# --- context sampler ------------------------------------------------------------------------

GAP_KINDS: dict[str, str] = {
    "secret": "someone close is keeping a secret that changes everything for the character",
    "betrayal": "someone the character trusts has already betrayed them",
    "danger": "danger is coming that the character cannot see",
    "misunderstanding": "the character has misread someone's intentions completely",
    "hidden_identity": "someone near the character is not who they claim to be",
    "impending_loss": "the character is about to lose someone or something and does not know",
    "benevolent_deception": "people are hiding a kind surprise or sacrifice from the character",
    "hidden_illness": "someone the character loves is ill and hiding it",
    "stolen_credit": "the character's work or idea has been quietly taken by someone they praise",
    "overheard_plan": "the player overheard a plan that involves the character",
    "false_hope": "the thing the character is counting on has already fallen through",
    "unrequited_feeling": "someone's feelings for the character are not what the character thinks",
}

TRUTHS = FacetFile(
    "dramatic_irony/gaps",
    "a concrete truth the player knows and the character does not",
    tuple(GAP_KINDS),
)
WHO_KNOWS = FacetFile(
    "dramatic_irony/who_knows", "who knows the truth and keeps it from the character"
)
GENRES = FacetFile("dramatic_irony/genres", "the genre or mode of the scene")
SETTINGS = FacetFile("dramatic_irony/settings", "where and when the scene takes place")
FACET_FILES = (TRUTHS, WHO_KNOWS, GENRES, SETTINGS)

TENSION_TARGETS = {
    "0.55-0.70 (simmering)": (0.55, 0.70),
    "0.70-0.85 (high)": (0.70, 0.85),
    "0.85-1.00 (unbearable)": (0.85, 1.00),
}
_SHAPES = tuple(OCEAN_SHAPES)


def _gap_kind(gap: str) -> str:
    return f"{GAP_KINDS[gap]} ({gap.replace('_', ' ')})"


def sample_contexts(
    rng: random.Random,
    n: int,
    *,
    facets: FacetLibrary | None = None,
    weights: Mapping[str, float] | None = None,
) -> list[ItemContext]:
    """One brief per item: knowledge-gap kinds rotated (steered by ``weights``), each with a
    concrete truth of its kind, who keeps it, a genre and a setting; characters in varied
    personality shapes and tension targets rotated."""
    lib = facets or default_facets()
    truths = lib.groups(TRUTHS.name)
    gaps = steered_rotation(rng, tuple(GAP_KINDS), n, weights)
    tensions = rotation(rng, tuple(TENSION_TARGETS), n)
    settings = rotation(rng, lib.items(SETTINGS.name), n)
    holders = rotation(rng, lib.items(WHO_KNOWS.name), n)
    genres = rotation(rng, lib.items(GENRES.name), n)
    shapes = rotation(rng, _SHAPES, n)
    contexts: list[ItemContext] = []
    for gap, tension, setting, holder, genre, shape in zip(
        gaps, tensions, settings, holders, genres, shapes, strict=True
    ):
        truth = rng.choice(truths[gap])
        name = sample_name(rng, lib)
        capacity = rng.randint(1, 10)
        ocean = sample_ocean_shape(rng, shape)
        brief = {
            "knowledge_gap_kind": _gap_kind(gap),
            "the_truth_the_player_knows": truth,
            "who_knows_it": holder,
            "genre": genre,
            "setting": setting,
            "character": name,
            "emotional_capacity": f"{capacity}/10",
            "personality": describe_ocean(ocean),
            "personality_shape": OCEAN_SHAPES[shape],
            "target_tension": tension,
        }
        pins = {
            "character.name": Pin.exactly(name),
            "character.emotional_capacity": Pin.exactly(capacity),
            **{f"character.ocean.{trait}": Pin.exactly(value) for trait, value in ocean.items()},
            "tension": Pin.between(*TENSION_TARGETS[tension]),
        }
        contexts.append(ItemContext(facets=brief, quota_key=gap, pins=pins))
    return contexts


def categories(facets: FacetLibrary | None = None) -> list[str]:
    """The knowledge-gap kinds: the quota keys."""
    return list(GAP_KINDS)


def facet_cells(facets: FacetLibrary | None = None) -> dict[str, list[str]]:
    """Every value the list-drawn facets of a brief can take, as the brief stores it."""
    lib = facets or default_facets()
    return {
        "knowledge_gap_kind": [_gap_kind(gap) for gap in GAP_KINDS],
        "the_truth_the_player_knows": list(lib.items(TRUTHS.name)),
        "who_knows_it": list(lib.items(WHO_KNOWS.name)),
        "genre": list(lib.items(GENRES.name)),
        "setting": list(lib.items(SETTINGS.name)),
        "personality_shape": list(OCEAN_SHAPES.values()),
        "target_tension": list(TENSION_TARGETS),
    }


def text_for_dedup(sample: DramaticIronySample) -> str:
    options = (sample.options.tone_deaf, sample.options.misguided, sample.options.growth)
    return join_prose(
        sample.setting,
        sample.player_knows,
        sample.character_doesnt_know,
        sample.why_unknown,
        sample.knowledge_gap,
        *(part for o in options for part in (o.dialogue, o.internal_reasoning, o.consequence)),
    )


TEXT_RULES = {
    "setting": TextRule(min_words=3),
    "character.name": NAME,
    "player_knows": TextRule(min_words=5),
    "character_doesnt_know": TextRule(min_words=4),
    "why_unknown": TextRule(min_words=5),
    "knowledge_gap": TextRule(min_words=6),
    **{
        f"options.{kind}.{field}": rule
        for kind in ("tone_deaf", "misguided", "growth")
        for field, rule in (
            ("dialogue", TextRule("line", 3)),
            ("internal_reasoning", TextRule(min_words=5)),
            ("consequence", TextRule(min_words=5)),
        )
    },
}

# --- the judge: the three options shuffled and labelled, blind ------------------------------

OptionKind = Literal["tone_deaf", "misguided", "growth"]
OPTION_KINDS: tuple[OptionKind, ...] = ("tone_deaf", "misguided", "growth")


class IronyJudgeLabels(SampleModel):
    """The judge's reading of the three unlabelled options."""

    option_kinds: list[OptionKind] = Field(
        min_length=3,
        max_length=3,
        description="the kind of each option, in the order shown: tone_deaf, misguided or "
        "growth, each once",
    )
    reveals_hidden_knowledge: bool = Field(
        description="true if any option has the character say or reason with something only "
        "the player can know"
    )


def judge_blind(payload: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], Any]:
    """The scene with its three options in a shuffled order, without their kinds or their
    relationship deltas (which would give the kinds away); the key is the true order."""
    order = list(OPTION_KINDS)
    rng.shuffle(order)
    options = payload["options"]
    view = {k: v for k, v in payload.items() if k != "options"}
    view["options"] = [
        {k: v for k, v in options[kind].items() if k != "relationship_delta"} for kind in order
    ]
    return view, order


def judge_agreement(sample: DramaticIronySample, labels: IronyJudgeLabels, key: Any) -> LabelResult:
    """Every option labelled as what it is, and no character knowing the player's secret."""
    order = list(key)
    right = sum(a == b for a, b in zip(labels.option_kinds, order, strict=False))
    ok = right == 3 and not labels.reveals_hidden_knowledge
    problems = []
    if right < 3:
        problems.append(f"options read as {labels.option_kinds}, written as {order}")
    if labels.reveals_hidden_knowledge:
        problems.append("a character reveals knowledge they cannot have")
    agreement = right / 3 * (0.5 if labels.reveals_hidden_knowledge else 1.0)
    return LabelResult(round(agreement, 4), ok, "; ".join(problems))


JUDGE = JudgeSpec(blind=judge_blind, labels=IronyJudgeLabels, agreement=judge_agreement)

SPEC = DataTypeSpec(
    name="dramatic_irony",
    title="Dramatic irony",
    description=(
        "Scenes where the player knows something the character does not. Each scenario states "
        "what the player knows, what the character is missing and why, and gives exactly three "
        "responses: a tone-deaf one, a misguided one and one that shows growth, each with its "
        "reasoning, its consequence and its effect on the relationship."
    ),
    model=DramaticIronySample,
    checks=CHECKS,
    sample_contexts=sample_contexts,
    text_for_dedup=text_for_dedup,
    text_rules=TEXT_RULES,
    judge=JUDGE,
    facet_files=FACET_FILES,
    categories=categories,
    facet_cells=facet_cells,
)
