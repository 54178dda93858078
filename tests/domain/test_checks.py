"""check(sample, brief): content checks on every free-text field, leakage, and adherence to the
brief a sample was written from (pins in the schema and in the check)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from gen_service.domain.checking import (
    check,
    item_schema_for,
    pin_item_schema,
    pin_problems,
    request_schema,
    rules_for,
)
from gen_service.domain.content import NAME, STOCK_PHRASES, TextRule, text_problems
from gen_service.domain.datatypes import REGISTRY, ItemContext
from gen_service.domain.datatypes._base import Pin
from gen_service.domain.schema import grammar_safe, item_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "prompts" / "examples"


def example(name: str, index: int = 0, **changes: Any) -> dict[str, Any]:
    """Example ``index`` of ``name`` with ``a__b`` paths replaced."""
    lines = [x for x in (EXAMPLES / f"{name}.jsonl").read_text().splitlines() if x.strip()]
    data: dict[str, Any] = json.loads(lines[index])
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return data


def codes_of(name: str, data: dict[str, Any], brief: ItemContext | None = None) -> list[str]:
    spec = REGISTRY[name]
    return [p.split(":", 1)[0] for p in check(spec, spec.model.model_validate(data), brief)]


# -- the garbage the quickstart once accepted -------------------------------------------------


def test_irony_sample_with_numbers_for_prose_is_rejected() -> None:
    """An irony sample whose setting is "4.2", character "1.2" and player_knows "6.6"."""
    bad = example("dramatic_irony", setting="4.2", character__name="1.2", player_knows="6.6")
    problems = check(
        REGISTRY["dramatic_irony"], REGISTRY["dramatic_irony"].model.model_validate(bad)
    )
    assert "not_prose: setting is not words ('4.2')" in problems
    assert "not_a_name: character.name is not a name ('1.2')" in problems
    assert "not_prose: player_knows is not words ('6.6')" in problems


def test_tension_withheld_that_is_a_dotted_id_is_rejected() -> None:
    """withheld = "derek.johnson.1.12.21.7.8.17.62.2009…" is not prose."""
    bad = example("tension_building", withheld="derek.johnson.1.12.21.7.8.17.62.2009…")
    assert codes_of("tension_building", bad) == ["not_prose"]


def test_personality_evidence_that_is_an_id_is_rejected() -> None:
    """Evidence fields holding "E-1191 ," are not prose."""
    evidence = {t: "E-1191 ," for t in example("personality_traits")["evidence"]}
    bad = example("personality_traits", evidence=evidence)
    problems = codes_of("personality_traits", bad)
    assert problems.count("not_prose") == 5


def test_syllable_loop_is_rejected() -> None:
    """Text like "huhdlehdlehdeh…" is a decoding loop, alone or inside a sentence."""
    assert "repetition_loop" in [
        p.split(":")[0] for p in text_problems("f", "huhdlehdlehdeh…", TextRule())
    ]
    inside = "She whispered huhdlehdlehdehdlehdleh and turned back to the sink."
    assert "repetition_loop" in [p.split(":")[0] for p in text_problems("f", inside, TextRule())]


# -- each content check, both ways -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule", "code"),
    [
        ("Fine.", TextRule(min_words=3), "too_short"),
        ("12 14 2009 7", TextRule(), "not_prose"),
        ("see 4.2.1 and 7.3.3 and 8.8.8", TextRule(), "not_prose"),
        ("I am fine I am fine I am fine I am fine I am fine", TextRule(), "repetition_loop"),
        ("She felt a wave of emotion as the train pulled out.", TextRule(), "stock_phrase"),
        ("I’m here for you, okay? Always.", TextRule("line", 3), "stock_phrase"),
        ("Amara 7", NAME, "not_a_name"),
        ("Dr. Amara Okafor of the Northern Tidewater Fishing Cooperative", NAME, "not_a_name"),
    ],
)
def test_content_check_rejects(text: str, rule: TextRule, code: str) -> None:
    """Each content rule catches its case, with its reason code."""
    assert code in [p.split(":", 1)[0] for p in text_problems("field", text, rule)]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("It's 3 a.m. and the 4:15 train is late again.", TextRule(min_words=6)),
        ("Well — maybe. I don't know, Tomás.", TextRule("line", 3)),
        ("No.", TextRule("line", 1)),
        ("Siobhán Ó Briain", NAME),
        ("Joon-ho Park", NAME),
        ("Dr. Amara Okafor", NAME),
        ("Her hands shook; she kept folding the same towel, twice, three times.", TextRule()),
    ],
)
def test_content_check_passes_writing(text: str, rule: TextRule) -> None:
    """Ordinary prose, speech and names pass every content rule."""
    assert text_problems("field", text, rule) == []


def test_every_shipped_example_passes_every_check() -> None:
    """The few-shot examples are what the checks want: none has a content problem."""
    for name, spec in REGISTRY.items():
        for line in (EXAMPLES / f"{name}.jsonl").read_text().splitlines():
            if line.strip() and not line.startswith("//"):
                assert check(spec, spec.model.model_validate(json.loads(line))) == [], name


def test_min_words_comes_from_the_type_and_the_config() -> None:
    """Each type sets minimum word counts per field; the config can raise them."""
    spec = REGISTRY["emotional_authenticity"]
    assert rules_for(spec)["authenticity_notes"].min_words == 8
    assert rules_for(spec, {"authenticity_notes": 40})["authenticity_notes"].min_words == 40
    data = example("emotional_authenticity")
    sample = spec.model.model_validate(data)
    strict = rules_for(spec, {"authenticity_notes": 400})
    assert any(
        p.startswith("too_short: authenticity_notes") for p in check(spec, sample, rules=strict)
    )
    with pytest.raises(KeyError, match="no free-text field 'support_level'"):
        rules_for(spec, {"support_level": 2})


def test_stock_phrases_are_the_ones_the_prompt_names() -> None:
    """The list is lowercase with straight apostrophes (the check folds the text the same way)."""
    assert all(p == p.casefold().replace("’", "'") for p in STOCK_PHRASES)


# -- leakage ------------------------------------------------------------------------------------


def test_tension_withheld_leaking_into_the_question_is_rejected() -> None:
    """The player's question must not spell out what is withheld; a question about it may."""
    base = example("tension_building")
    leaky = dict(base, player_question=f"Is it true that {base['withheld']}?")
    assert "leak_withheld" in codes_of("tension_building", leaky)
    assert "leak_withheld" not in codes_of("tension_building", base)


def test_irony_character_saying_what_only_the_player_knows_is_rejected() -> None:
    """An option whose dialogue repeats the player-only fact leaks; the shipped ones do not."""
    base = example("dramatic_irony")
    options = json.loads(json.dumps(base["options"]))
    options["misguided"]["dialogue"] = f"I already know: {base['player_knows']}"
    leaky = dict(base, options=options)
    assert "leak_player_knowledge" in codes_of("dramatic_irony", leaky)
    assert "leak_player_knowledge" not in codes_of("dramatic_irony", base)


# -- adherence to the brief ---------------------------------------------------------------------


def brief_for(name: str, seed: int = 3) -> ItemContext:
    return REGISTRY[name].sample_contexts(random.Random(seed), 1)[0]


def on_brief(name: str, brief: ItemContext, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with every pinned field set as the brief says (the middle of a range)."""
    data = json.loads(json.dumps(data))
    for path, pin in brief.pins.items():
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = pin.const if pin.const is not None else round((pin.low + pin.high) / 2, 2)
    return data


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_type_pins_its_brief(name: str) -> None:
    """Every sampler pins what its brief fixes; a sample that follows the pins passes, and one
    that moves a pinned field is off brief."""
    brief = brief_for(name)
    assert brief.pins
    good = on_brief(name, brief, example(name))
    if name == "personality_traits":  # the dominant trait follows the briefed one
        good["ocean"][brief.facets["dominant_trait"]] = brief.pins[
            f"ocean.{brief.facets['dominant_trait']}"
        ].high
    assert codes_of(name, good, brief) == []
    for path, pin in brief.pins.items():
        moved = json.loads(json.dumps(good))
        *parents, leaf = path.split(".")
        node = moved
        for key in parents:
            node = node[key]
        node[leaf] = moved_value(field_schema(name, path), pin)
        assert "off_brief" in codes_of(name, moved, brief), path


def field_schema(name: str, path: str) -> dict[str, Any]:
    node = item_schema(REGISTRY[name].model, 2000)
    for key in path.split("."):
        node = node["properties"][key]
    return node


def moved_value(schema: dict[str, Any], pin: Pin) -> Any:
    """A value the pin does not allow and the model's schema does."""
    if "enum" in schema:
        return next(v for v in schema["enum"] if v != pin.const)
    if pin.const is None:
        assert pin.low is not None and pin.high is not None
        return round(pin.low - 0.1, 2) if pin.low >= 0.1 else round(pin.high + 0.1, 2)
    if isinstance(pin.const, int):
        return 10 if pin.const != 10 else 1
    if isinstance(pin.const, float):
        return round(pin.const + 0.1, 2) if pin.const <= 0.9 else round(pin.const - 0.1, 2)
    return "Someone Else"


def test_personality_scores_must_follow_the_target_and_its_dominant_trait() -> None:
    """Scores outside the tolerance, or another trait on top, are off brief."""
    brief = brief_for("personality_traits", seed=11)
    dominant = brief.facets["dominant_trait"]
    good = on_brief("personality_traits", brief, example("personality_traits"))
    good["ocean"][dominant] = brief.pins[f"ocean.{dominant}"].high
    assert codes_of("personality_traits", good, brief) == []
    other = next(t for t in good["ocean"] if t != dominant)
    swapped = json.loads(json.dumps(good))
    swapped["ocean"][other] = 1.0
    problems = check(
        REGISTRY["personality_traits"],
        REGISTRY["personality_traits"].model.model_validate(swapped),
        brief,
    )
    assert any(p.startswith(f"off_brief: ocean.{other}") for p in problems)
    assert any("the dominant trait is" in p for p in problems)


def test_pins_become_schema_constants_and_bounds() -> None:
    """The request schema says what the brief fixes: const for names and categories, narrowed
    bounds for target ranges, each item in its own place (prefixItems)."""
    spec = REGISTRY["relationship_scoring"]
    briefs = spec.sample_contexts(random.Random(4), 3)
    rules = rules_for(spec)
    schema = request_schema(item_schema(spec.model, 2000), briefs, rules)
    array = schema["properties"]["samples"]
    assert array["items"] is False and array["minItems"] == array["maxItems"] == 3
    for brief, item in zip(briefs, array["prefixItems"], strict=True):
        props = item["properties"]
        assert props["character_name"]["const"] == brief.pins["character_name"].const
        assert props["interaction_type"]["const"] == brief.pins["interaction_type"].const
        assert props["score"]["minimum"] == brief.pins["score"].low
        assert props["score"]["maximum"] == brief.pins["score"].high
        assert props["rationale"]["minLength"] >= rules["rationale"].min_words * 8
    plain = request_schema(item_schema(spec.model, 2000), briefs, rules, positional=False)
    assert "const" not in json.dumps(plain)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize(("cap", "letters"), [(None, False), (2000, False), (30, True)])
def test_request_schema_items_are_each_briefs_pinned_item(
    name: str, cap: int | None, letters: bool
) -> None:
    """Each item of a request schema is exactly (key order included) the brief's pinned item,
    made grammar-safe when asked: the fast path that rewrites only the pinned fields says
    what rewriting the whole item per brief says."""
    spec = REGISTRY[name]
    briefs = spec.sample_contexts(random.Random(11), 6)
    rules = rules_for(spec)
    item = item_schema(spec.model, 2000)
    schema = request_schema(item, briefs, rules, grammar_cap=cap, letters=letters)
    for brief, got in zip(briefs, schema["properties"]["samples"]["prefixItems"], strict=True):
        want = item_schema_for(item, rules, brief)
        if cap is not None:
            want = grammar_safe(want, cap, letters=letters)
        assert json.dumps(got) == json.dumps(want)
    plain = request_schema(item, briefs, rules, positional=False, grammar_cap=cap)
    want = item_schema_for(item, rules, None)
    if cap is not None:
        want = grammar_safe(want, cap)
    assert json.dumps(plain["properties"]["samples"]["items"]) == json.dumps(want)


def test_pin_problems_compare_numbers_at_two_decimals() -> None:
    """A const float matches within rounding; a range includes its ends."""
    pins = {"a": Pin.exactly(0.72), "b": Pin.between(0.2, 0.4)}
    assert pin_problems({"a": 0.7201, "b": 0.4}, pins) == []
    assert [p.split(":")[0] for p in pin_problems({"a": 0.75, "b": 0.41}, pins)] == [
        "off_brief",
        "off_brief",
    ]


def test_min_length_never_exceeds_max_length() -> None:
    """A tight max_string_chars caps the minimum length the word rule asks for."""
    spec = REGISTRY["emotional_authenticity"]
    item = item_schema_for(item_schema(spec.model, 30), rules_for(spec), None)
    notes = item["properties"]["authenticity_notes"]
    assert notes["minLength"] <= notes["maxLength"] == 30


def test_pin_item_schema_refuses_an_unknown_field() -> None:
    """A pin on a field the schema does not have is a programming error, said plainly."""
    with pytest.raises(KeyError, match="no field"):
        pin_item_schema({"type": "object", "properties": {}}, {"x": Pin.exactly(1)})


def test_brief_round_trips_through_json() -> None:
    """A brief stored with a sample reads back equal (provenance)."""
    for name in REGISTRY:
        brief = brief_for(name)
        assert ItemContext.from_json(json.loads(json.dumps(brief.to_json()))) == brief


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_type_s_samples_are_checked_for_placeholders_first(name: str) -> None:
    """check() looks for placeholders in every type's samples (no type has to list it), and
    reports them before the type's own and the content checks, as before."""
    spec = REGISTRY[name]
    data = example(name)
    prose = next(key for key, rule in rules_for(spec).items() if rule.kind == "prose")
    node: Any = data
    *parents, leaf = prose.replace("[]", ".0").split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(leaf)] = "She said [insert the reason here] and left the room without a word."
    else:
        node[leaf] = "She said [insert the reason here] and left the room without a word."
    problems = check(spec, spec.model.model_validate(data))
    assert problems and problems[0].startswith("placeholder: ")
    assert "an [insert ...] slot" in problems[0]
    assert check(spec, spec.model.model_validate(example(name))) == []
