"""Chat / SFT renderings of samples (pure), in the TRL convention: one training example is
``{"messages": [system, user, assistant]}``.

Each data type is rendered so that it teaches what the game's model must do at run time, from
what the game knows at that moment to what the model must produce:

- personality_traits: a scenario and a character's lines → the Big Five labels as JSON (the
  evidence per trait first, so the scores follow from it).
- emotional_authenticity: the character, their emotional capacity and why, the other person,
  what happened and what they need → the response as JSON (thought, dialogue, behaviour,
  support level, failure mode). The author's authenticity notes are commentary, not output.
- dramatic_irony: one scenario becomes THREE examples, one per option kind: the scene, the
  character, what the player knows and what the character does not, and the kind of response
  asked for → that option as JSON.
- tension_building: a technique and a scene setup → the beat as JSON (revealed, withheld, the
  player's question, why it works, the payoff and its timing, the tension).
- relationship_scoring: the relationship, the interaction type, the player's action and the
  character's response → factors, rationale and score as JSON (the score last, after its
  reasons).

The system prompts are fixed text here, not taken from docstrings or templates: a training
set's prompt must not change because a comment was reworded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from gen_service.domain.datatypes._base import OCEAN_TRAITS, Ocean, SampleModel
from gen_service.domain.datatypes.dramatic_irony import DramaticIronySample
from gen_service.domain.datatypes.emotional_authenticity import EmotionalAuthenticitySample
from gen_service.domain.datatypes.personality_traits import PersonalityTraitsSample
from gen_service.domain.datatypes.relationship_scoring import RelationshipScoringSample
from gen_service.domain.datatypes.tension_building import TensionBuildingSample

Role = Literal["system", "user", "assistant"]
OptionKind = Literal["tone_deaf", "misguided", "growth"]
OPTION_KINDS: tuple[OptionKind, ...] = ("tone_deaf", "misguided", "growth")


class Message(TypedDict):
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatExample:
    """One conversation; ``option`` names the irony option it teaches (None for other types)."""

    messages: tuple[Message, Message, Message]
    option: OptionKind | None = None


PERSONALITY_SYSTEM = (
    "You read personality from speech. You are given a scenario and a character's own lines. "
    "Rate the Big Five traits the lines reveal, each from 0 (very low) to 1 (very high), and "
    "say for each trait what in the lines shows its level. Answer with JSON only: "
    '{"evidence": {trait: text}, "ocean": {trait: score}, "dominant_trait": trait}, with the '
    "traits openness, conscientiousness, extraversion, agreeableness and neuroticism; the "
    "dominant trait is the one with the highest score."
)

EMOTIONAL_SYSTEM = (
    "You play a character in a narrative game. You are told who the character is (their Big "
    "Five profile), how much emotional capacity they have right now (1 = fully depleted, "
    "10 = steady and resourced) and why, and what another person needs from them. Respond as "
    "this person really would at this capacity: a depleted character cannot give full support "
    "however much they care, and falls short in a way that fits their personality. Answer with "
    'JSON only: {"internal_thought", "dialogue", "behavior", "support_level" (none, minimal, '
    'partial or full), "failure_mode" (none when the support is full; otherwise deflection, '
    "withdrawal, irritability, over_promising, minimizing, intellectualizing, fixing, "
    "self_focus, toxic_positivity or numbness)}."
)

IRONY_SYSTEM = (
    "You play a character in a narrative game who does not know something the player knows. "
    "You are given the scene, the character (Big Five profile and emotional capacity, "
    "1 depleted .. 10 resourced), what the player knows, what the character does not know and "
    "why, and the kind of response to write. tone_deaf: the character blunders on, unaware, "
    "saying what hurts most given what the player knows. misguided: the character means well "
    "but acts on their wrong picture of the situation. growth: the character senses something "
    "is off and responds with openness despite not knowing. The character never learns the "
    'hidden fact. Answer with JSON only: {"dialogue", "internal_reasoning" (why the character, '
    'knowing only what they know, says this), "consequence" (what it sets in motion, as the '
    'player sees it), "relationship_delta" (-1 wrecked .. 1 much closer)}.'
)

TENSION_SYSTEM = (
    "You design suspense for a narrative game. You are given a technique and a scene setup. "
    "Write one suspense beat: what the player is shown, what is held back and by whom, the "
    "question the player is left asking, why the gap creates suspense, and how and when it "
    "pays off. Techniques: incomplete_revelation (part of a truth shown), "
    "contradictory_behavior (a character acts against what we know of them), information_debt "
    "(the story owes the player an answer), foreshadowing (an early hint of a later event); "
    "foreshadowing and information debt never pay off immediately. Answer with JSON only: "
    '{"revealed", "withheld", "player_question", "suspense_analysis", "payoff", '
    '"payoff_timing" (immediate, short, medium or long), "tension" (0..1)}.'
)

RELATIONSHIP_SYSTEM = (
    "You judge what an interaction does to a relationship in a narrative game. You are given "
    "who the character is to the player, the kind of interaction, what the player did and how "
    "the character responded. Name the factors that decide how it lands (each strengthens, "
    "damages or is mixed), explain why for this character and this history, then score it: "
    "0 badly damaged, 0.5 unchanged, 1 much stronger. Answer with JSON only: "
    '{"factors": [{"factor", "effect"}], "rationale", "score"}.'
)


def _answer(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def _conversation(system: str, user: str, assistant: Mapping[str, Any]) -> ChatExample:
    return ChatExample(
        (
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": _answer(assistant)},
        )
    )


def _ocean(ocean: Ocean) -> str:
    scores = ocean.as_dict()
    return ", ".join(f"{trait} {scores[trait]:.2f}" for trait in OCEAN_TRAITS)


def personality_traits_chat(sample: PersonalityTraitsSample) -> list[ChatExample]:
    lines = "\n".join(f"- {line}" for line in sample.dialogue)
    user = f"Scenario: {sample.scenario}\n\n{sample.character_name} says:\n{lines}"
    dump = sample.model_dump(mode="json")
    answer = {
        "evidence": dump["evidence"],
        "ocean": dump["ocean"],
        "dominant_trait": dump["dominant_trait"],
    }
    return [_conversation(PERSONALITY_SYSTEM, user, answer)]


def emotional_authenticity_chat(sample: EmotionalAuthenticitySample) -> list[ChatExample]:
    user = (
        f"Character: {sample.character.name} ({_ocean(sample.character.ocean)})\n"
        f"Emotional capacity: {sample.emotional_capacity}/10. Why: {sample.capacity_reason}\n"
        f"The other person: {sample.other_person}\n"
        f"What happened: {sample.situation}\n"
        f"What they need: {sample.other_person_needs}"
    )
    answer = {
        "internal_thought": sample.internal_thought,
        "dialogue": sample.dialogue,
        "behavior": sample.behavior,
        "support_level": sample.support_level,
        "failure_mode": sample.failure_mode,
    }
    return [_conversation(EMOTIONAL_SYSTEM, user, answer)]


def dramatic_irony_chat(sample: DramaticIronySample) -> list[ChatExample]:
    """Three examples, one per option kind, sharing the scene."""
    scene = (
        f"Scene: {sample.setting}\n"
        f"Character: {sample.character.name} ({_ocean(sample.character.ocean)}; emotional "
        f"capacity {sample.character.emotional_capacity}/10)\n"
        f"The player knows: {sample.player_knows}\n"
        f"The character does not know: {sample.character_doesnt_know}\n"
        f"Why they cannot know: {sample.why_unknown}\n"
        f"What the gap means: {sample.knowledge_gap}"
    )
    options = sample.options.model_dump(mode="json")
    examples: list[ChatExample] = []
    for kind in OPTION_KINDS:
        option = options[kind]
        answer = {
            "dialogue": option["dialogue"],
            "internal_reasoning": option["internal_reasoning"],
            "consequence": option["consequence"],
            "relationship_delta": option["relationship_delta"],
        }
        example = _conversation(IRONY_SYSTEM, f"{scene}\n\nWrite the {kind} response.", answer)
        examples.append(ChatExample(example.messages, option=kind))
    return examples


def tension_building_chat(sample: TensionBuildingSample) -> list[ChatExample]:
    user = f"Technique: {sample.technique}\nSetup: {sample.setup}"
    answer = {
        "revealed": sample.revealed,
        "withheld": sample.withheld,
        "player_question": sample.player_question,
        "suspense_analysis": sample.suspense_analysis,
        "payoff": sample.payoff,
        "payoff_timing": sample.payoff_timing,
        "tension": sample.tension,
    }
    return [_conversation(TENSION_SYSTEM, user, answer)]


def relationship_scoring_chat(sample: RelationshipScoringSample) -> list[ChatExample]:
    user = (
        f"Character: {sample.character_name}\n"
        f"Relationship: {sample.relationship_context}\n"
        f"Interaction: {sample.interaction_type}\n"
        f"The player: {sample.player_action}\n"
        f"The character responds: {sample.character_response}"
    )
    dump = sample.model_dump(mode="json")
    answer = {"factors": dump["factors"], "rationale": sample.rationale, "score": sample.score}
    return [_conversation(RELATIONSHIP_SYSTEM, user, answer)]


RENDERERS: Mapping[str, Callable[[Any], list[ChatExample]]] = {
    "personality_traits": personality_traits_chat,
    "emotional_authenticity": emotional_authenticity_chat,
    "dramatic_irony": dramatic_irony_chat,
    "tension_building": tension_building_chat,
    "relationship_scoring": relationship_scoring_chat,
}

# What one chat row of a type teaches, for the dataset card.
LAYOUTS: Mapping[str, str] = {
    "personality_traits": "scenario + the character's lines → evidence, OCEAN scores and the "
    "dominant trait (JSON)",
    "emotional_authenticity": "character (OCEAN) + emotional capacity and why + the other "
    "person, what happened, what they need → internal thought, dialogue, behaviour, support "
    "level, failure mode (JSON)",
    "dramatic_irony": "three rows per scenario, one per option kind (column `option`): scene "
    "+ character + what the player knows and the character does not + the kind asked → that "
    "option's dialogue, reasoning, consequence and relationship delta (JSON)",
    "tension_building": "technique + setup → revealed, withheld, player question, suspense "
    "analysis, payoff, payoff timing, tension (JSON)",
    "relationship_scoring": "relationship + interaction type + player action + character "
    "response → factors, rationale, score (JSON)",
}


def chat_examples(datatype: str, sample: SampleModel) -> list[ChatExample]:
    """The chat rendering of one validated sample of ``datatype``."""
    try:
        render = RENDERERS[datatype]
    except KeyError:
        raise KeyError(f"no chat rendering for data type {datatype!r}") from None
    return render(sample)


def chat_row(example: ChatExample, sample_id: int) -> dict[str, Any]:
    """A chat example as one dataset row: ``messages``, the sample's ``id`` and, for irony,
    the ``option`` it teaches."""
    row: dict[str, Any] = {"messages": [dict(m) for m in example.messages], "id": sample_id}
    if example.option is not None:
        row["option"] = example.option
    return row
