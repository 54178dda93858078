"""Chat / SFT renderings: each data type becomes system/user/assistant conversations that teach
what the game's model must do, without the answer leaking into the question."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gen_service.domain.chat_format import OPTION_KINDS, chat_examples, chat_row
from gen_service.domain.datatypes import REGISTRY, SampleModel

EXAMPLES = Path(__file__).resolve().parents[2] / "prompts" / "examples"


def sample(datatype: str, index: int = 0) -> SampleModel:
    """A real few-shot example of ``datatype``, validated by its model."""
    lines = [
        line
        for line in (EXAMPLES / f"{datatype}.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("//")
    ]
    return REGISTRY[datatype].model.model_validate_json(lines[index])


def answer_of(example_messages: Any) -> dict[str, Any]:
    roles = [m["role"] for m in example_messages]
    assert roles == ["system", "user", "assistant"]
    assert all(isinstance(m["content"], str) and m["content"].strip() for m in example_messages)
    parsed: dict[str, Any] = json.loads(example_messages[2]["content"])
    return parsed


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


@pytest.mark.parametrize("datatype", list(REGISTRY))
def test_every_type_renders_a_conversation_whose_answer_is_not_in_the_question(
    datatype: str,
) -> None:
    """Each type renders system/user/assistant; the assistant's JSON holds only what the
    sample says, and none of its free text appears in the system or user turn."""
    s = sample(datatype)
    examples = chat_examples(datatype, s)
    assert examples
    dump = json.dumps(s.model_dump(mode="json"), ensure_ascii=False)
    for example in examples:
        answer = answer_of(example.messages)
        prompt = example.messages[0]["content"] + example.messages[1]["content"]
        for text in strings_in(answer):
            assert text in dump
            if len(text.split()) > 3:  # labels (e.g. "partial") may be named in the prompt
                assert text not in prompt, f"{datatype}: the answer leaks into the prompt"


def test_personality_traits_teaches_labels_from_lines() -> None:
    """Scenario and every line go in; evidence, the five scores and the dominant trait come
    out, with the scores exactly the sample's labels."""
    s = sample("personality_traits")
    (example,) = chat_examples("personality_traits", s)
    user = example.messages[1]["content"]
    dump = s.model_dump(mode="json")
    assert dump["scenario"] in user and all(line in user for line in dump["dialogue"])
    answer = answer_of(example.messages)
    assert list(answer) == ["evidence", "ocean", "dominant_trait"]
    assert answer["ocean"] == dump["ocean"]
    assert answer["dominant_trait"] == dump["dominant_trait"]
    assert str(dump["ocean"]["openness"]) not in user


def test_emotional_authenticity_teaches_the_response_at_a_capacity() -> None:
    """Character, capacity and why, the other person and their need go in; thought,
    dialogue, behaviour, support level and failure mode come out; the author's notes do not."""
    s = sample("emotional_authenticity")
    (example,) = chat_examples("emotional_authenticity", s)
    dump = s.model_dump(mode="json")
    user = example.messages[1]["content"]
    assert f"{dump['emotional_capacity']}/10" in user
    for key in ("capacity_reason", "other_person", "situation", "other_person_needs"):
        assert dump[key] in user
    assert dump["character"]["name"] in user
    answer = answer_of(example.messages)
    assert answer == {
        k: dump[k]
        for k in ("internal_thought", "dialogue", "behavior", "support_level", "failure_mode")
    }
    assert dump["authenticity_notes"] not in json.dumps(
        [m["content"] for m in example.messages], ensure_ascii=False
    )


def test_dramatic_irony_flattens_into_three_examples_one_per_option() -> None:
    """One scenario becomes three conversations sharing the scene, each asking for one
    option kind and answering with exactly that option."""
    s = sample("dramatic_irony")
    examples = chat_examples("dramatic_irony", s)
    assert [e.option for e in examples] == list(OPTION_KINDS)
    dump = s.model_dump(mode="json")
    users = {e.messages[1]["content"] for e in examples}
    assert len(users) == 3
    for example in examples:
        assert example.option is not None
        user = example.messages[1]["content"]
        assert f"Write the {example.option} response." in user
        for key in ("setting", "player_knows", "character_doesnt_know", "why_unknown"):
            assert dump[key] in user
        assert answer_of(example.messages) == dump["options"][example.option]
        others = [k for k in OPTION_KINDS if k != example.option]
        assert all(dump["options"][k]["dialogue"] not in user for k in others)
    row = chat_row(examples[1], 17)
    assert row == {
        "messages": [dict(m) for m in examples[1].messages],
        "id": 17,
        "option": "misguided",
    }


def test_tension_building_teaches_the_beat_from_technique_and_setup() -> None:
    """Technique and setup go in; the beat comes out, timing and tension included."""
    s = sample("tension_building")
    (example,) = chat_examples("tension_building", s)
    dump = s.model_dump(mode="json")
    assert (
        example.messages[1]["content"] == f"Technique: {dump['technique']}\nSetup: {dump['setup']}"
    )
    answer = answer_of(example.messages)
    assert answer == {k: v for k, v in dump.items() if k not in ("technique", "setup")}


def test_relationship_scoring_puts_the_score_after_its_reasons() -> None:
    """Context, interaction, action and response go in; factors, rationale and then the
    score come out; a chat row of another type has no option column."""
    s = sample("relationship_scoring")
    (example,) = chat_examples("relationship_scoring", s)
    dump = s.model_dump(mode="json")
    user = example.messages[1]["content"]
    for key in ("relationship_context", "interaction_type", "player_action", "character_response"):
        assert dump[key] in user
    answer = answer_of(example.messages)
    assert list(answer) == ["factors", "rationale", "score"]
    assert answer["factors"] == dump["factors"] and answer["score"] == dump["score"]
    assert set(chat_row(example, 3)) == {"messages", "id"}


def test_unknown_type_is_refused() -> None:
    """A data type without a chat rendering is an error, not an empty list."""
    with pytest.raises(KeyError, match="no chat rendering"):
        chat_examples("weather_reports", sample("tension_building"))
