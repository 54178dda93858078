"""Facet lists (parsing and checks), quota steering, OCEAN shapes and dominant-trait leads, and
what the samplers declare: categories and facet cells."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gen_service.domain.checking import check
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._base import OCEAN_TRAITS, ItemContext
from gen_service.domain.datatypes._sampling import (
    OCEAN_SHAPES,
    rotation,
    sample_ocean_shape,
    steered_rotation,
)
from gen_service.domain.datatypes.personality_traits import (
    LEAD_WORDS,
    TARGET_TOLERANCE,
    score_pins,
)
from gen_service.domain.facets import FacetFile, parse_facet_file, steer
from gen_service.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "prompts" / "examples"
PLAIN = FacetFile("t/plain", "test items")
GROUPED = FacetFile("t/grouped", "test items", ("low", "high"))
WHERE = "prompts/facets/t/x.txt"


# --- parsing -----------------------------------------------------------------------------------


def test_plain_file_keeps_items_and_skips_comments_and_blanks() -> None:
    """Comment and blank lines are skipped; items keep their order, inner spaces collapsed."""
    text = "# a comment\n\nfirst  item\n   # indented comment\nsecond item\n"
    facet = parse_facet_file(PLAIN, text, WHERE)
    assert facet.items == ("first item", "second item")


def test_grouped_file_sorts_items_under_their_headings() -> None:
    """Items belong to the heading above them; groups come in the declared order."""
    text = "[high]\ntall\n# note\n[low]\nshort\nsmall\n"
    facet = parse_facet_file(GROUPED, text, WHERE)
    assert dict(facet.groups) == {"low": ("short", "small"), "high": ("tall",)}
    assert facet.items == ("short", "small", "tall")


@pytest.mark.parametrize(
    ("spec", "text", "line", "words"),
    [
        (PLAIN, "one\ntwo\nOne.\n", 3, "duplicate line: 'One.' is already on line 1"),
        (GROUPED, "[low]\na\n[middle]\nb\n", 3, "unknown category [middle]"),
        (GROUPED, "[low]\na\n[high]\nb\n[low]\nc\n", 5, "appears twice (first on line 1)"),
        (GROUPED, "stray\n[low]\na\n[high]\nb\n", 1, "comes before any category heading"),
        (GROUPED, "[low]\n[high]\nb\n", 1, "[low] has no items"),
        (PLAIN, "a\n[low]\nb\n", 2, "this file is a plain list"),
        (PLAIN, "fine\nthey felt a wave of emotion\n", 2, "stock phrase 'a wave of emotion'"),
        (PLAIN, "a; b\n", 1, "use a comma"),
        (PLAIN, "x" * 201 + "\n", 1, "201 characters long"),
    ],
)
def test_a_broken_line_names_the_file_and_line(
    spec: FacetFile, text: str, line: int, words: str
) -> None:
    """Each problem in a facet file is a ConfigError naming the file, the line and the fault."""
    with pytest.raises(ConfigError) as info:
        parse_facet_file(spec, text, WHERE)
    assert f"{WHERE}:{line}: " in str(info.value)
    assert words in str(info.value)
    assert info.value.path == WHERE


@pytest.mark.parametrize(
    ("spec", "text", "words"),
    [
        (PLAIN, "# only a comment\n\n", "holds no items"),
        (GROUPED, "[low]\na\n", "no [high] heading"),
    ],
)
def test_an_empty_list_or_a_missing_category_is_refused(
    spec: FacetFile, text: str, words: str
) -> None:
    """A file without items, or without one of its categories, is a ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        parse_facet_file(spec, text, WHERE)
    assert WHERE in str(info.value) and words in str(info.value)


# --- steering ----------------------------------------------------------------------------------

CATS = ("a", "b", "c", "d")


def test_steer_gives_even_weights_for_an_even_history() -> None:
    """Equal counts (or none at all) give every category exactly the same weight."""
    for counts in ({}, dict.fromkeys(CATS, 250)):
        weights = steer(CATS, counts)
        assert set(weights.values()) == {0.25}


def test_steer_favours_the_categories_furthest_behind() -> None:
    """Weights fall as counts rise; a category far ahead keeps only a small, positive weight."""
    weights = steer(CATS, {"a": 900, "b": 300, "c": 100, "d": 0, "ignored": 10_000})
    assert weights["a"] < weights["b"] < weights["c"] < weights["d"]
    assert 0 < weights["a"] < 0.01
    assert sum(weights.values()) == pytest.approx(1.0)
    assert set(weights) == set(CATS)


def test_steer_nudges_rather_than_floods_when_nearly_even() -> None:
    """A few samples behind moves a category's weight by a few percent, not to all of it."""
    weights = steer(CATS, {"a": 101, "b": 100, "c": 100, "d": 99})
    assert 0.24 < weights["a"] < weights["d"] < 0.26


def test_steered_rotation_is_plain_rotation_when_the_weights_are_even() -> None:
    """Even weights change nothing: the same picks as rotation() from the same seed."""
    even = steer(CATS, dict.fromkeys(CATS, 7))
    assert steered_rotation(random.Random(3), CATS, 10, even) == rotation(
        random.Random(3), CATS, 10
    )


def test_steered_rotation_counts_follow_the_weights_within_a_batch() -> None:
    """Each option appears the floor or the ceiling of n x its weight, never further off."""
    weights = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}
    for seed in range(50):
        picks = Counter(steered_rotation(random.Random(seed), CATS, 12, weights))
        assert sum(picks.values()) == 12
        for option, weight in weights.items():
            assert abs(picks[option] - 12 * weight) < 1, (seed, picks)


def skewed(categories: list[str]) -> dict[str, int]:
    """Every other category far ahead, the rest empty."""
    return {c: (1000 if i % 2 == 0 else 0) for i, c in enumerate(categories)}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_a_skewed_history_steers_new_briefs_to_the_empty_categories(name: str) -> None:
    """With half the categories far ahead, new briefs go almost all to the other half."""
    spec = REGISTRY[name]
    categories = spec.categories()
    counts = skewed(categories)
    weights = steer(categories, counts)
    full = {c for c, n in counts.items() if n}
    keys = [
        c.quota_key
        for seed in range(40)
        for c in spec.sample_contexts(random.Random(seed), 15, weights=weights)
    ]
    unsteered = [
        c.quota_key for seed in range(40) for c in spec.sample_contexts(random.Random(seed), 15)
    ]
    assert sum(k in full for k in unsteered) / len(unsteered) > 0.3
    assert sum(k in full for k in keys) / len(keys) < 0.05


@pytest.mark.parametrize("name", list(REGISTRY))
def test_an_even_history_leaves_the_designed_spread_alone(name: str) -> None:
    """Even counts give exactly the briefs an unsteered sampler gives from the same seed."""
    spec = REGISTRY[name]
    weights = steer(spec.categories(), dict.fromkeys(spec.categories(), 40))
    for seed in range(5):
        steered = spec.sample_contexts(random.Random(seed), 15, weights=weights)
        assert steered == spec.sample_contexts(random.Random(seed), 15)


def test_one_empty_situation_category_gets_a_bigger_share() -> None:
    """A category behind the others is drawn well above its even share until it catches up."""
    spec = REGISTRY["emotional_authenticity"]
    counts = dict.fromkeys(spec.categories(), 100) | {"grief": 0}
    weights = steer(spec.categories(), counts)
    keys = Counter(
        c.quota_key
        for seed in range(60)
        for c in spec.sample_contexts(random.Random(seed), 15, weights=weights)
    )
    share = keys["grief"] / sum(keys.values())
    assert share > 0.15  # an even share is 1/15
    assert set(keys) == set(spec.categories())  # the others are still written


@pytest.mark.parametrize("name", list(REGISTRY))
def test_steered_sampling_is_deterministic(name: str) -> None:
    """The same seed and weights give the same briefs."""
    spec = REGISTRY[name]
    weights = steer(spec.categories(), skewed(spec.categories()))
    first = spec.sample_contexts(random.Random(9), 12, weights=weights)
    assert first == spec.sample_contexts(random.Random(9), 12, weights=weights)


# --- what the samplers declare -----------------------------------------------------------------


@pytest.mark.parametrize("name", list(REGISTRY))
def test_briefs_stay_within_the_declared_categories_and_cells(name: str) -> None:
    """Every quota key is a declared category and every list-drawn facet value a declared cell;
    over many briefs every category is produced."""
    spec = REGISTRY[name]
    categories = spec.categories()
    cells = {facet: set(values) for facet, values in spec.facet_cells().items()}
    assert categories and cells
    seen: set[str] = set()
    for seed in range(30):
        for context in spec.sample_contexts(random.Random(seed), 20):
            seen.add(context.quota_key)
            for facet, values in cells.items():
                if facet in context.facets:
                    assert context.facets[facet] in values, (facet, context.facets[facet])
    assert seen == set(categories)


@pytest.mark.parametrize(
    ("name", "facet", "at_least"),
    [
        ("emotional_authenticity", "situation", 400),
        ("dramatic_irony", "the_truth_the_player_knows", 180),
        ("tension_building", "built_around", 200),
        ("relationship_scoring", "who_they_are", 150),
        ("personality_traits", "scenario", 150),
    ],
)
def test_the_main_facet_of_each_type_has_hundreds_of_values(
    name: str, facet: str, at_least: int
) -> None:
    """The facet that most shapes a sample offers hundreds of distinct values, not dozens."""
    cells = REGISTRY[name].facet_cells()[facet]
    assert len(cells) >= at_least
    assert len(set(cells)) == len(cells)


# --- OCEAN shapes ------------------------------------------------------------------------------


def shape_of(ocean: dict[str, float]) -> set[str]:
    values = sorted(ocean.values())
    shapes = set()
    if values[-1] - values[0] <= 0.12 + 1e-9:
        shapes.add("flat")
    if values[-1] <= 0.3:
        shapes.add("all_low")
    if values[-2] >= 0.7 and values[-3] <= 0.45:
        shapes.add("two_high")
    return shapes


@pytest.mark.parametrize("shape", ["flat", "all_low", "two_high"])
def test_each_ocean_shape_draws_profiles_of_that_shape(shape: str) -> None:
    """sample_ocean_shape gives the named shape every time, within 0..1."""
    rng = random.Random(1)
    for _ in range(300):
        profile = sample_ocean_shape(rng, shape)  # type: ignore[arg-type]
        assert shape in shape_of(dict(profile))
        assert all(0 <= v <= 1 for v in profile.values())


def pinned_ocean(context: ItemContext) -> dict[str, float]:
    return {
        path.rsplit(".", 1)[1]: float(pin.const)
        for path, pin in context.pins.items()
        if ".ocean." in path
    }


@pytest.mark.parametrize("name", ["emotional_authenticity", "dramatic_irony"])
def test_character_briefs_cover_flat_all_low_and_two_high_profiles(name: str) -> None:
    """Over many briefs, characters come flat, low across the board and with two high traits,
    each in a fair share, not only with one trait on top."""
    spec = REGISTRY[name]
    found: Counter[str] = Counter()
    described: set[str] = set()
    briefs = [c for seed in range(50) for c in spec.sample_contexts(random.Random(seed), 14)]
    for context in briefs:
        found.update(shape_of(pinned_ocean(context)))
        described.add(str(context.facets["personality_shape"]))
    for shape in ("flat", "all_low", "two_high"):
        assert found[shape] / len(briefs) > 0.08, (shape, found)
    assert described == set(OCEAN_SHAPES.values())


# --- personality: the dominant trait's lead ----------------------------------------------------


def personality_briefs(count: int) -> list[ItemContext]:
    spec = REGISTRY["personality_traits"]
    return [c for seed in range(count // 25) for c in spec.sample_contexts(random.Random(seed), 25)]


def targets(context: ItemContext) -> dict[str, float]:
    parts = (p.split() for p in str(context.facets["target_scores"]).split(", "))
    return {trait: float(value) for trait, value in parts}


def test_personality_leads_run_from_slight_to_overwhelming() -> None:
    """The dominant trait leads the next by 0.02-0.05 in some briefs and by over half the scale
    in others; every lead band is briefed, and the dominant trait is always strictly on top."""
    margins = []
    leads = Counter()
    for context in personality_briefs(1000):
        scores = targets(context)
        dominant = str(context.facets["dominant_trait"])
        runner_up = max(v for t, v in scores.items() if t != dominant)
        margins.append(round(scores[dominant] - runner_up, 2))
        leads[str(context.facets["dominant_lead"])] += 1
    assert min(margins) >= 0.02
    assert sum(0.02 <= m <= 0.05 for m in margins) / len(margins) > 0.15
    assert max(margins) >= 0.6
    assert set(leads) == set(LEAD_WORDS.values())


def test_personality_other_traits_spread_over_the_whole_range() -> None:
    """The four non-dominant traits take values in every tenth of 0..1."""
    tenths: set[int] = set()
    for context in personality_briefs(1000):
        dominant = context.facets["dominant_trait"]
        tenths.update(min(int(v * 10), 9) for t, v in targets(context).items() if t != dominant)
    assert tenths == set(range(10))


def test_personality_pins_keep_the_dominant_trait_on_top() -> None:
    """Every pin holds its target within the tolerance, and the dominant trait's lowest allowed
    score is above every other trait's highest: no score the pins allow can unseat it."""
    for context in personality_briefs(1000):
        scores = targets(context)
        dominant = context.facets["dominant_trait"]
        floor = context.pins[f"ocean.{dominant}"].low
        assert floor is not None
        for trait, value in scores.items():
            pin = context.pins[f"ocean.{trait}"]
            assert pin.low is not None and pin.high is not None
            assert pin.low <= value <= pin.high
            assert value - pin.low <= TARGET_TOLERANCE + 1e-9
            assert pin.high - value <= TARGET_TOLERANCE + 1e-9
            if trait != dominant:
                assert pin.high < floor


def test_score_pins_split_a_slight_lead_and_leave_a_wide_one_alone() -> None:
    """A 0.02 lead splits the gap between the two top traits; a 0.4 lead keeps the full ±0.1."""
    slight = score_pins(
        {"openness": 0.52, "conscientiousness": 0.5, "extraversion": 0.1, "agreeableness": 0.3,
         "neuroticism": 0.2},
        "openness",
    )  # fmt: skip
    assert (slight["ocean.openness"].low, slight["ocean.openness"].high) == (0.51, 0.62)
    assert (slight["ocean.conscientiousness"].low, slight["ocean.conscientiousness"].high) == (
        0.4,
        0.5,
    )
    wide = score_pins(
        {"openness": 0.9, "conscientiousness": 0.5, "extraversion": 0.1, "agreeableness": 0.3,
         "neuroticism": 0.2},
        "openness",
    )  # fmt: skip
    assert (wide["ocean.openness"].low, wide["ocean.openness"].high) == (0.8, 1.0)
    assert (wide["ocean.conscientiousness"].low, wide["ocean.conscientiousness"].high) == (
        0.4,
        0.6,
    )
    with pytest.raises(ValueError, match=r"at least 0\.02"):
        score_pins(dict.fromkeys(OCEAN_TRAITS, 0.5) | {"openness": 0.51}, "openness")


def personality_example() -> dict[str, Any]:
    line = (EXAMPLES / "personality_traits.jsonl").read_text().splitlines()[0]
    data: dict[str, Any] = json.loads(line)
    return data


def test_a_sample_at_the_edge_of_the_pins_is_on_brief() -> None:
    """The worst case the pins allow (dominant at its lowest, the others at their highest)
    passes the checks: check_dominant_as_briefed can always be met."""
    spec = REGISTRY["personality_traits"]
    slight = [
        c for c in personality_briefs(500) if c.facets["dominant_lead"] == LEAD_WORDS["slight"]
    ]
    assert slight
    for context in slight[:40]:
        data = personality_example()
        data["character_name"] = context.pins["character_name"].const
        dominant = context.facets["dominant_trait"]
        for trait in OCEAN_TRAITS:
            pin = context.pins[f"ocean.{trait}"]
            data["ocean"][trait] = pin.low if trait == dominant else pin.high
        problems = check(spec, spec.model.model_validate(data), context)
        assert not [p for p in problems if p.startswith("off_brief")], problems
