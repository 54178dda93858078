"""The five data types: models, schemas, checks, context samplers and dedup text."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gen_service.domain import datatypes
from gen_service.domain.datatypes import REGISTRY, DataTypeSpec, SampleModel
from gen_service.domain.datatypes._base import (
    OCEAN_TRAITS,
    jaccard,
    placeholder_problems,
    same_text,
)
from gen_service.domain.datatypes._sampling import rotation, sample_ocean
from gen_service.domain.datatypes.relationship_scoring import _PLAUSIBLE_BANDS, SCORE_BANDS
from gen_service.domain.datatypes.tension_building import TECHNIQUES

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "prompts" / "examples"
SPEC_ORDER = [
    "emotional_authenticity",
    "dramatic_irony",
    "personality_traits",
    "tension_building",
    "relationship_scoring",
]


def examples(name: str) -> list[dict[str, Any]]:
    lines = (EXAMPLES_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("//")]


def problems(spec: DataTypeSpec, sample: SampleModel) -> list[str]:
    return [problem for check in spec.checks for problem in check(sample)]


def variant(name: str, index: int = 0, **changes: Any) -> SampleModel:
    """Example ``index`` of ``name`` with dotted paths replaced, validated against the model."""
    data = examples(name)[index]
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return REGISTRY[name].model.model_validate(data)


def codes(spec_name: str, sample: SampleModel) -> list[str]:
    return [problem.split(":", 1)[0] for problem in problems(REGISTRY[spec_name], sample)]


# --- registry ------------------------------------------------------------------------------


def test_registry_lists_the_five_types_in_spec_order() -> None:
    """REGISTRY holds the five data types in the order of SPEC §1, keyed by their names."""
    assert list(REGISTRY) == SPEC_ORDER
    assert all(spec.name == name for name, spec in REGISTRY.items())


def test_get_unknown_type_names_the_known_ones() -> None:
    """get() of an unknown name raises KeyError listing every known data type."""
    with pytest.raises(KeyError) as info:
        datatypes.get("emotional_authenticty")
    assert all(name in str(info.value) for name in SPEC_ORDER)
    assert datatypes.get("dramatic_irony") is REGISTRY["dramatic_irony"]


# --- few-shot examples ---------------------------------------------------------------------


@pytest.mark.parametrize("name", SPEC_ORDER)
def test_every_example_validates_and_passes_the_checks(name: str) -> None:
    """Each shipped few-shot example is a valid sample that passes every check of its type."""
    spec = REGISTRY[name]
    loaded = examples(name)
    assert len(loaded) >= 3
    for raw in loaded:
        sample = spec.model.model_validate(raw)
        assert problems(spec, sample) == []


def test_emotional_examples_cover_low_mid_and_high_capacity() -> None:
    """The emotional examples show the memo's edge cases: capacity 2 vs 5 vs 8."""
    capacities = {e["emotional_capacity"] for e in examples("emotional_authenticity")}
    assert {2, 5, 8} <= capacities


# --- schemas -------------------------------------------------------------------------------


def walk_schema(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(walk_schema(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(walk_schema(value))
    return found


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return {**schema["$defs"][ref.rsplit("/", 1)[1]], **{k: v for k, v in node.items()}}
    return node


def prop(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    node = schema
    for key in path:
        node = resolve(schema, node["properties"][key])
    return node


@pytest.mark.parametrize("name", SPEC_ORDER)
def test_schemas_use_only_grammar_friendly_features(name: str) -> None:
    """No regex patterns, uniqueItems or formats; closed objects; every field described."""
    schema = REGISTRY[name].model.model_json_schema()
    nodes = walk_schema(schema)
    for banned in ("pattern", "uniqueItems", "format", "patternProperties"):
        assert not any(banned in node for node in nodes), banned
    for node in nodes:
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False
            assert set(node["required"]) == set(node["properties"])
            for field_name, field in node["properties"].items():
                assert field.get("description"), f"{field_name} has no description"
                assert field_name == field_name.lower() and " " not in field_name


def test_emotional_schema_bounds_and_enums() -> None:
    """Capacity is an integer 1..10, support and failure mode are enums, OCEAN is 0..1."""
    schema = REGISTRY["emotional_authenticity"].model.model_json_schema()
    capacity = prop(schema, "emotional_capacity")
    assert (capacity["type"], capacity["minimum"], capacity["maximum"]) == ("integer", 1, 10)
    assert prop(schema, "support_level")["enum"] == ["none", "minimal", "partial", "full"]
    failure = prop(schema, "failure_mode")["enum"]
    assert {"none", "deflection", "withdrawal", "irritability", "over_promising"} <= set(failure)
    for trait in OCEAN_TRAITS:
        bounds = prop(schema, "character", "ocean", trait)
        assert (bounds["minimum"], bounds["maximum"]) == (0, 1)
    assert prop(schema, "dialogue")["minLength"] == 1


def test_irony_schema_has_three_named_options_with_bounded_deltas() -> None:
    """Options are an object with exactly tone_deaf, misguided and growth, deltas within -1..1."""
    schema = REGISTRY["dramatic_irony"].model.model_json_schema()
    options = prop(schema, "options")
    assert options["type"] == "object"
    assert list(options["properties"]) == ["tone_deaf", "misguided", "growth"]
    assert options["required"] == ["tone_deaf", "misguided", "growth"]
    for kind in ("tone_deaf", "misguided", "growth"):
        option = prop(schema, "options", kind)
        assert set(option["properties"]) == {
            "dialogue",
            "internal_reasoning",
            "consequence",
            "relationship_delta",
        }
        delta = prop(schema, "options", kind, "relationship_delta")
        assert -1 <= delta["minimum"] < delta["maximum"] <= 1
    assert prop(schema, "options", "tone_deaf", "relationship_delta")["maximum"] < 1
    assert prop(schema, "options", "growth", "relationship_delta")["minimum"] > -1
    assert (prop(schema, "tension")["minimum"], prop(schema, "tension")["maximum"]) == (0, 1)
    capacity = prop(schema, "character", "emotional_capacity")
    assert (capacity["minimum"], capacity["maximum"]) == (1, 10)


def test_personality_schema_bounds_lines_and_leaves_dominant_trait_derived() -> None:
    """Dialogue is 2..8 lines, evidence is one string per trait, dominant_trait is not asked for."""
    schema = REGISTRY["personality_traits"].model.model_json_schema()
    dialogue = prop(schema, "dialogue")
    assert (dialogue["minItems"], dialogue["maxItems"]) == (2, 8)
    assert dialogue["items"]["minLength"] == 1
    assert list(prop(schema, "evidence")["properties"]) == list(OCEAN_TRAITS)
    assert list(prop(schema, "ocean")["properties"]) == list(OCEAN_TRAITS)
    assert "dominant_trait" not in schema["properties"]
    dumped = REGISTRY["personality_traits"].model.model_json_schema(mode="serialization")
    assert dumped["properties"]["dominant_trait"]["enum"] == list(OCEAN_TRAITS)


def test_tension_schema_enums() -> None:
    """Technique and payoff timing are the SPEC's enums; tension is 0..1."""
    schema = REGISTRY["tension_building"].model.model_json_schema()
    assert prop(schema, "technique")["enum"] == list(TECHNIQUES)
    assert prop(schema, "payoff_timing")["enum"] == ["immediate", "short", "medium", "long"]
    assert (prop(schema, "tension")["minimum"], prop(schema, "tension")["maximum"]) == (0, 1)


def test_relationship_schema_bounds() -> None:
    """Score is 0..1, factors a list of 1..6 objects with an effect enum, interaction an enum."""
    schema = REGISTRY["relationship_scoring"].model.model_json_schema()
    assert (prop(schema, "score")["minimum"], prop(schema, "score")["maximum"]) == (0, 1)
    factors = prop(schema, "factors")
    assert (factors["minItems"], factors["maxItems"]) == (1, 6)
    factor = resolve(schema, factors["items"])
    assert prop(factor, "effect")["enum"] == ["strengthens", "damages", "mixed"]
    kinds = set(prop(schema, "interaction_type")["enum"])
    assert {"comfort", "betrayal", "gift", "joke", "apology", "refusal"} <= kinds


def test_models_reject_out_of_range_values() -> None:
    """Pydantic enforces the same bounds the schema states."""
    with pytest.raises(ValidationError):
        variant("emotional_authenticity", emotional_capacity=11)
    with pytest.raises(ValidationError):
        variant("dramatic_irony", options__growth__relationship_delta=1.5)
    with pytest.raises(ValidationError):
        variant("relationship_scoring", factors=[])
    with pytest.raises(ValidationError):
        variant("personality_traits", dialogue=["only one line"])
    with pytest.raises(ValidationError):
        variant("tension_building", technique="red_herring")


# --- shared check helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "   ", "...", "…", "TODO", "tbd.", "N/A", "string", "Example", "xxx", "Lorem ipsum"],
)
def test_placeholder_whole_strings_are_flagged(text: str) -> None:
    """Empty, whitespace-only, punctuation-only and stand-in strings are problems."""
    sample = variant("emotional_authenticity").model_copy(update={"dialogue": text})
    found = placeholder_problems(sample)
    assert len(found) == 1 and "dialogue" in found[0]


@pytest.mark.parametrize(
    "text",
    [
        "I'll call [insert name] tomorrow.",
        "Tell <name> I said so.",
        "She says TODO and leaves.",
        "Dear {{ name }}, hello.",
        "lorem ipsum dolor sit amet",
    ],
)
def test_placeholder_slots_inside_text_are_flagged(text: str) -> None:
    """Template slots and TODO markers inside longer prose are problems."""
    sample = variant("emotional_authenticity").model_copy(update={"behavior": text})
    assert any("behavior" in problem for problem in placeholder_problems(sample))


@pytest.mark.parametrize(
    "text",
    [
        "For example, she never rings back.",
        "Love you, see you Sunday xxx",
        "Todo bien, she says, though it isn't.",
        "Wait... no. Sit down.",
        "N/A was all he wrote on the form, and she laughed.",
    ],
)
def test_ordinary_prose_is_not_a_placeholder(text: str) -> None:
    """Words like 'example' or an ellipsis inside real prose are not flagged."""
    sample = variant("emotional_authenticity").model_copy(update={"dialogue": text})
    assert placeholder_problems(sample) == []


def test_similarity_helpers() -> None:
    """same_text ignores case and punctuation; jaccard compares word sets."""
    assert same_text("I'm fine. Really!", "i'm fine really")
    assert not same_text("I'm fine", "I am fine")
    assert jaccard("the cat sat", "the cat sat") == 1.0
    assert jaccard("a b", "c d") == 0.0
    assert jaccard("a b c d", "a b c e") == pytest.approx(3 / 5)


# --- per-type checks: each catches a crafted bad sample ------------------------------------


def test_emotional_low_capacity_never_gives_full_support() -> None:
    """Capacity 1-3 with full support is rejected; capacity 4 with full support is not."""
    bad = variant("emotional_authenticity", 0, support_level="full", failure_mode="none")
    assert codes("emotional_authenticity", bad) == ["capacity_support_mismatch"]
    ok = variant(
        "emotional_authenticity", 0, emotional_capacity=4, support_level="full", failure_mode="none"
    )
    assert codes("emotional_authenticity", ok) == []


def test_emotional_support_level_and_failure_mode_agree() -> None:
    """Full support has no failure mode; no support always has one."""
    full = variant("emotional_authenticity", 2, failure_mode="deflection")
    assert codes("emotional_authenticity", full) == ["support_failure_mismatch"]
    none = variant("emotional_authenticity", 0, support_level="none", failure_mode="none")
    assert codes("emotional_authenticity", none) == ["support_failure_mismatch"]
    partial = variant("emotional_authenticity", 1, failure_mode="none")
    assert codes("emotional_authenticity", partial) == []


def test_emotional_thought_must_differ_from_dialogue() -> None:
    """internal_thought repeating the dialogue is rejected."""
    good = examples("emotional_authenticity")[1]
    bad = variant("emotional_authenticity", 1, internal_thought=good["dialogue"].upper())
    assert codes("emotional_authenticity", bad) == ["thought_equals_dialogue"]


def test_irony_identical_options_are_rejected() -> None:
    """Two options with the same dialogue are rejected."""
    line = examples("dramatic_irony")[0]["options"]["growth"]["dialogue"]
    bad = variant("dramatic_irony", 0, options__misguided__dialogue=line)
    assert codes("dramatic_irony", bad) == ["options_identical"]


def test_irony_near_identical_options_are_rejected() -> None:
    """Dialogues sharing 60% or more of their words are too similar."""
    bad = variant(
        "dramatic_irony",
        0,
        options__tone_deaf__dialogue="Dad, tell me what is wrong tonight, please.",
        options__growth__dialogue="Dad, tell me what is wrong tonight, okay?",
    )
    assert codes("dramatic_irony", bad) == ["options_too_similar"]


def test_irony_growth_never_scores_below_tone_deaf() -> None:
    """A growth option that hurts the relationship more than the tone-deaf one is rejected."""
    bad = variant(
        "dramatic_irony",
        1,
        options__tone_deaf__relationship_delta=0.3,
        options__growth__relationship_delta=-0.2,
    )
    assert codes("dramatic_irony", bad) == ["delta_order"]
    tie = variant(
        "dramatic_irony",
        1,
        options__tone_deaf__relationship_delta=0.1,
        options__growth__relationship_delta=0.1,
    )
    assert codes("dramatic_irony", tie) == []


def test_personality_dominant_trait_is_the_highest_label() -> None:
    """dominant_trait is derived from the scores, first in OCEAN order on a tie."""
    sample = variant("personality_traits", 0)
    assert sample.model_dump()["dominant_trait"] == "openness"
    scores = dict.fromkeys(OCEAN_TRAITS, 0.4) | {"agreeableness": 0.8, "neuroticism": 0.8}
    tied = variant("personality_traits", 0, ocean=scores)
    assert tied.dominant_trait == "agreeableness"  # type: ignore[attr-defined]


def test_personality_stated_dominant_trait_must_match_the_scores() -> None:
    """A dump validates again; a stated dominant trait that is not the highest is rejected."""
    spec = REGISTRY["personality_traits"]
    sample = variant("personality_traits", 1)
    dumped = sample.model_dump(mode="json")
    assert dumped["dominant_trait"] == "neuroticism"
    assert spec.model.model_validate(dumped) == sample
    with pytest.raises(ValidationError, match="not the highest-scoring trait"):
        spec.model.model_validate(dumped | {"dominant_trait": "openness"})


def test_personality_repeated_lines_and_evidence_are_rejected() -> None:
    """A repeated dialogue line or the same evidence for two traits is rejected."""
    lines = examples("personality_traits")[2]["dialogue"]
    repeated = variant("personality_traits", 2, dialogue=[*lines[:2], lines[0]])
    assert codes("personality_traits", repeated) == ["dialogue_repeated"]
    evidence = examples("personality_traits")[2]["evidence"]
    pasted = variant("personality_traits", 2, evidence__openness=evidence["neuroticism"])
    assert codes("personality_traits", pasted) == ["evidence_repeated"]


def test_tension_revealed_and_withheld_must_differ() -> None:
    """Revealed and withheld being the same (or nearly the same) text is rejected."""
    revealed = examples("tension_building")[0]["revealed"]
    same = variant("tension_building", 0, withheld=revealed)
    assert codes("tension_building", same) == ["revealed_equals_withheld"]
    nearly = variant("tension_building", 0, withheld=revealed.replace("alone", "quietly"))
    assert codes("tension_building", nearly) == ["revealed_equals_withheld"]


def test_tension_deferred_techniques_cannot_pay_off_immediately() -> None:
    """Foreshadowing and information debt with an immediate payoff are rejected."""
    for index in (1, 2):  # information_debt, foreshadowing
        bad = variant("tension_building", index, payoff_timing="immediate")
        assert codes("tension_building", bad) == ["technique_timing_mismatch"]
    ok = variant("tension_building", 0, payoff_timing="immediate")  # contradictory_behavior
    assert codes("tension_building", ok) == []


def test_tension_payoff_must_not_repeat_the_revelation() -> None:
    """A payoff that restates what was revealed is rejected."""
    revealed = examples("tension_building")[2]["revealed"]
    bad = variant("tension_building", 2, payoff=revealed)
    assert codes("tension_building", bad) == ["payoff_repeats_revealed"]


def test_relationship_score_needs_matching_factors() -> None:
    """A high score needs a strengthening factor, a low score a damaging one."""
    only_damage = [{"factor": "He lied about the money", "effect": "damages"}]
    high = variant("relationship_scoring", 2, factors=only_damage, score=0.85)
    assert codes("relationship_scoring", high) == ["score_factor_mismatch"]
    only_good = [{"factor": "She remembered his birthday", "effect": "strengthens"}]
    low = variant("relationship_scoring", 0, factors=only_good, score=0.1)
    assert codes("relationship_scoring", low) == ["score_factor_mismatch"]
    middle = variant("relationship_scoring", 1, factors=only_good, score=0.5)
    assert codes("relationship_scoring", middle) == []


def test_relationship_rationale_and_factors_must_not_repeat() -> None:
    """A rationale that repeats the response, or a factor listed twice, is rejected."""
    response = examples("relationship_scoring")[1]["character_response"]
    bad = variant("relationship_scoring", 1, rationale=response)
    assert codes("relationship_scoring", bad) == ["rationale_repeats_response"]
    factor = {"factor": "Kept her word", "effect": "strengthens"}
    twice = variant("relationship_scoring", 2, factors=[factor, factor])
    assert codes("relationship_scoring", twice) == ["factor_repeated"]


# --- random schema-valid data passes the checks often enough --------------------------------

# The fake Ollama fills the JSON schema with random but valid values. If random valid samples
# failed the checks most of the time, test runs against the fake would never reach their targets;
# this generator mimics the fake (random words, uniform numbers, random enum members) in a
# harsh setting (tiny vocabulary, so strings collide often) and a plain one.
VOCABULARY = [
    "amber", "river", "quiet", "lantern", "harbor", "stone", "velvet", "orchard", "thunder",
    "copper", "meadow", "echo", "saddle", "violin", "glacier", "marble", "tide", "ember",
    "willow", "falcon", "canyon", "pepper", "silk", "anchor", "cedar", "mirror", "walnut",
    "comet", "prairie", "basil", "drift", "hollow", "kettle", "lemon", "maple", "needle",
    "oyster", "pebble", "quill", "raven", "scarf", "thimble", "umber", "vessel", "wander",
    "yarrow", "zephyr",
]  # fmt: skip


def random_value(
    schema: dict[str, Any], node: dict[str, Any], rng: random.Random, vocab: list[str], words: int
) -> Any:
    node = resolve(schema, node)
    if "enum" in node:
        return rng.choice(node["enum"])
    kind = node["type"]
    if kind == "object":
        return {
            key: random_value(schema, child, rng, vocab, words)
            for key, child in node["properties"].items()
        }
    if kind == "array":
        count = rng.randint(node.get("minItems", 0), node.get("maxItems", 5))
        return [random_value(schema, node["items"], rng, vocab, words) for _ in range(count)]
    if kind == "string":
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(1, words)))
    if kind == "integer":
        return rng.randint(node.get("minimum", 0), node.get("maximum", 100))
    if kind == "number":
        return rng.uniform(node.get("minimum", 0), node.get("maximum", 1))
    raise AssertionError(f"unexpected schema node {node}")


def random_pass_rate(spec: DataTypeSpec, vocab: list[str], words: int, trials: int) -> float:
    rng = random.Random(1234)
    schema = spec.model.model_json_schema()
    passed = 0
    for _ in range(trials):
        sample = spec.model.model_validate(random_value(schema, schema, rng, vocab, words))
        passed += not problems(spec, sample)
    return passed / trials


@pytest.mark.parametrize("name", SPEC_ORDER)
@pytest.mark.parametrize(("vocab_size", "words"), [(len(VOCABULARY), 12), (12, 3)])
def test_random_schema_valid_samples_usually_pass_the_checks(
    name: str, vocab_size: int, words: int
) -> None:
    """At least half of random schema-valid samples pass every check (the fake's data)."""
    rate = random_pass_rate(REGISTRY[name], VOCABULARY[:vocab_size], words, trials=400)
    assert rate >= 0.6, f"{name}: only {rate:.0%} of random valid samples pass"


# --- context samplers ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SPEC_ORDER)
def test_samplers_are_deterministic_and_complete(name: str) -> None:
    """Same seed, same briefs; one brief per item, each with facets and a quota key."""
    spec = REGISTRY[name]
    first = spec.sample_contexts(random.Random(7), 25)
    again = spec.sample_contexts(random.Random(7), 25)
    other = spec.sample_contexts(random.Random(8), 25)
    assert first == again
    assert first != other
    assert len(first) == 25
    for context in first:
        assert context.quota_key
        assert context.facets and all(str(v).strip() for v in context.facets.values())
    assert spec.sample_contexts(random.Random(1), 0) == []


def test_emotional_sampler_spreads_capacities_over_low_mid_and_high() -> None:
    """Every batch of 3 or more covers low (1-3), mid (4-7) and high (8-10) capacity."""
    spec = REGISTRY["emotional_authenticity"]
    all_capacities: set[int] = set()
    for seed in range(40):
        batch = spec.sample_contexts(random.Random(seed), 15)
        capacities = [int(str(c.facets["emotional_capacity"]).split("/")[0]) for c in batch]
        assert min(capacities) <= 3 and max(capacities) >= 8
        assert any(4 <= c <= 7 for c in capacities)
        assert len({c.quota_key for c in batch}) == 15  # 15 situation categories, no repeat
        all_capacities.update(capacities)
    assert all_capacities == set(range(1, 11))


def test_irony_sampler_rotates_knowledge_gap_kinds() -> None:
    """A batch of ten gets ten different knowledge-gap kinds."""
    batch = REGISTRY["dramatic_irony"].sample_contexts(random.Random(3), 10)
    assert len({c.quota_key for c in batch}) == 10


def test_personality_sampler_rotates_dominant_traits() -> None:
    """A batch of 25 gives each OCEAN trait the lead five times, with target scores to match."""
    batch = REGISTRY["personality_traits"].sample_contexts(random.Random(3), 25)
    assert Counter(c.quota_key for c in batch) == dict.fromkeys(OCEAN_TRAITS, 5)
    for context in batch:
        assert context.facets["dominant_trait"] == context.quota_key


def test_sample_ocean_puts_the_requested_trait_clearly_on_top() -> None:
    """With high= set, that trait scores at least 0.1 above every other trait."""
    rng = random.Random(5)
    for _ in range(500):
        trait = rng.choice(OCEAN_TRAITS)
        profile = sample_ocean(rng, high=trait)
        others = max(v for t, v in profile.items() if t != trait)
        assert profile[trait] >= others + 0.09 and all(0 <= v <= 1 for v in profile.values())


def test_tension_sampler_rotates_techniques_with_fitting_timings() -> None:
    """Every four items cover the four techniques; deferred ones never get 'immediate'."""
    batch = REGISTRY["tension_building"].sample_contexts(random.Random(11), 12)
    for start in range(0, 12, 4):
        assert {c.quota_key for c in batch[start : start + 4]} == set(TECHNIQUES)
    for seed in range(30):
        for context in REGISTRY["tension_building"].sample_contexts(random.Random(seed), 12):
            if context.quota_key in ("foreshadowing", "information_debt"):
                assert context.facets["payoff_timing"] != "immediate"


def test_relationship_sampler_spreads_score_bands_with_plausible_interactions() -> None:
    """Every five items cover the five score bands, each with an interaction that fits it."""
    batch = REGISTRY["relationship_scoring"].sample_contexts(random.Random(2), 20)
    for start in range(0, 20, 5):
        bands = {c.facets["target_score"] for c in batch[start : start + 5]}
        assert bands == set(SCORE_BANDS)
    for context in batch:
        band = SCORE_BANDS.index(context.facets["target_score"])
        assert band in _PLAUSIBLE_BANDS[context.quota_key]  # type: ignore[index]
    sampler = REGISTRY["relationship_scoring"].sample_contexts
    kinds = {c.quota_key for seed in range(10) for c in sampler(random.Random(seed), 20)}
    assert len(kinds) >= 15


def test_rotation_covers_every_option_before_repeating() -> None:
    """rotation() gives each option once per cycle, in a seeded order."""
    picks = rotation(random.Random(0), "abcd", 10)
    assert sorted(picks[:4]) == sorted(picks[4:8]) == list("abcd")
    assert picks == rotation(random.Random(0), "abcd", 10)


# --- dedup text ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPEC_ORDER)
def test_dedup_text_holds_the_prose_not_the_name(name: str) -> None:
    """text_for_dedup joins the prose fields and leaves out the name field."""
    spec = REGISTRY[name]
    raw = examples(name)[0]
    text = spec.text_for_dedup(spec.model.model_validate(raw))
    name_field = raw.get("character_name") or raw.get("character", {}).get("name")
    if name_field:
        assert name_field not in text.split("\n")
    assert len(text) > 400
    prose = {
        "emotional_authenticity": raw.get("dialogue"),
        "dramatic_irony": raw.get("options", {}).get("growth", {}).get("dialogue"),
        "personality_traits": (raw.get("dialogue") or [""])[0],
        "tension_building": raw.get("withheld"),
        "relationship_scoring": raw.get("rationale"),
    }[name]
    assert prose and prose in text
