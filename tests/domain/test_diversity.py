"""Diversity metrics (pure): distinct-2, openings, facet coverage and label distributions, with
values computed by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.diversity import (
    DISTINCT_CAP,
    LABELS,
    Design,
    LabelSpec,
    cell_of,
    coverage,
    design_of,
    distinct_n,
    evenly_spaced,
    label_distribution,
    measure,
    opening,
    point_bin,
    spread,
    top_openings,
    total_variation,
)

from ..conftest import ALL_TYPES, PROMPTS

FIFTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def examples(datatype: str) -> list[dict[str, Any]]:
    """The shipped few-shot examples of a type: real, schema-valid samples."""
    path = PROMPTS / "examples" / f"{datatype}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def brief(quota: str, **pins: Any) -> dict[str, Any]:
    return {"facets": {}, "quota_key": quota, "pins": pins}


# -- distinct-n -------------------------------------------------------------------------------


def test_distinct_2_counts_bigrams_within_each_text() -> None:
    """'a b c' and 'a b d' hold four bigrams, three of them distinct: 0.75."""
    assert distinct_n(["a b c", "a b d"]) == 0.75


def test_distinct_2_does_not_join_texts() -> None:
    """No bigram spans two texts: 'a b' + 'c d' is two bigrams, not three."""
    assert distinct_n(["a b", "c d"]) == 1.0
    assert distinct_n(["The the THE"]) == 0.5  # case folded: (the, the) twice


def test_distinct_2_of_nothing_is_none() -> None:
    """Texts of fewer than two words hold no bigram: there is no figure."""
    assert distinct_n(["one", ""]) is None
    assert distinct_n([]) is None


def test_evenly_spaced_caps_and_keeps_the_first() -> None:
    """Ten items capped at four: indexes 0, 2, 5, 7 (steps of 2.5); fewer are kept whole."""
    assert evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7]
    assert evenly_spaced([1, 2], 4) == [1, 2]


# -- openings ---------------------------------------------------------------------------------


def test_opening_is_the_first_three_words_lowercased() -> None:
    """Punctuation goes, case folds, a short text gives what it has."""
    assert opening("She said, quietly: no.") == "she said quietly"
    assert opening("Fine.") == "fine"
    assert opening("...") == ""


def test_top_openings_count_and_rank() -> None:
    """Most common first, ties alphabetical; shares are of all the field's texts."""
    texts = ["I am here now", "I am here again", "You are late", "Zed is here", "i AM HERE"]
    top = top_openings(texts, top=2)
    assert [(o.words, o.count) for o in top] == [("i am here", 3), ("you are late", 1)]
    assert top[0].share == 3 / 5


# -- binning and distances --------------------------------------------------------------------


def test_spread_shares_a_range_over_the_bins_it_overlaps() -> None:
    """[0.7, 0.9] is half in 0.6-0.8 and half in 0.8-1.0; [0.85, 1.0] all in the last bin."""
    assert spread(0.7, 0.9, FIFTHS) == pytest.approx([0, 0, 0, 0.5, 0.5])
    assert spread(0.85, 1.0, FIFTHS) == pytest.approx([0, 0, 0, 0, 1])
    assert spread(0.3, 0.3, FIFTHS) == [0, 1, 0, 0, 0]  # a point


def test_the_last_bin_includes_its_upper_edge() -> None:
    """1.0 falls in 0.8-1.0, 0.8 in 0.8-1.0 (lower edges are inclusive), 1.1 nowhere."""
    assert point_bin(1.0, FIFTHS) == [0, 0, 0, 0, 1]
    assert point_bin(0.8, FIFTHS) == [0, 0, 0, 0, 1]
    assert point_bin(1.1, FIFTHS) == [0, 0, 0, 0, 0]


def test_total_variation_by_hand() -> None:
    """Observed 2:0 against a 50/50 design: 0.5 × (0.5 + 0.5) = 0.5; a match is 0."""
    assert total_variation([2, 0], [0.5, 0.5]) == 0.5
    assert total_variation([3, 3], [0.5, 0.5]) == 0.0
    assert total_variation([0, 0], [0.5, 0.5]) is None


# -- coverage ---------------------------------------------------------------------------------


def test_cell_is_the_quota_key_with_the_second_facet() -> None:
    """Emotional authenticity: the situation category × the capacity band of the pin."""
    quota, cell = cell_of("emotional_authenticity", brief("grief", emotional_capacity={"const": 2}))
    assert (quota, cell) == ("grief", "grief x low 1-3")
    assert cell_of("relationship_scoring", brief("gift", score={"min": 0.2, "max": 0.4})) == (
        "gift",
        "gift x 0.20-0.40",
    )
    assert cell_of("emotional_authenticity", brief("grief")) == ("grief", None)


def test_coverage_counts_over_design_and_observed() -> None:
    """Design {a, b}, 3 cells; briefs fill a×low and new c×high: quota keys 2/3, cells 2/4."""
    design = Design(
        quota_keys=frozenset({"a", "b"}),
        cells=frozenset({"a x low 1-3", "a x high 8-10", "b x low 1-3"}),
        labels={},
    )
    briefs = [
        brief("a", emotional_capacity={"const": 2}),
        brief("a", emotional_capacity={"const": 3}),
        brief("c", emotional_capacity={"const": 9}),
        None,
    ]
    cov = coverage("emotional_authenticity", briefs, design)
    assert (cov.quota_filled, cov.quota_cells) == (2, 3)
    assert (cov.cells_filled, cov.cells) == (2, 4)
    assert cov.missing == ("a x high 8-10", "b x low 1-3")
    assert cov.cell_share == 0.5 and cov.second_facet == "capacity band"


def test_design_cells_follow_the_sampler() -> None:
    """Tension building's sampler pairs techniques with fitting timings: 4+4+3+3 = 14 cells."""
    design = design_of("tension_building")
    assert len(design.quota_keys) == 4
    assert len(design.cells) == 14
    assert "foreshadowing x immediate" not in design.cells


def test_designed_label_shares_come_from_the_pins() -> None:
    """The sampler rotates capacity bands and techniques: each gets exactly its equal share."""
    ea = design_of("emotional_authenticity").labels
    assert ea["capacity_band"] == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert design_of("tension_building").labels["technique"] == pytest.approx((0.25,) * 4)
    assert "support_level" not in ea  # no brief sets it


# -- label distributions ----------------------------------------------------------------------


def test_numeric_label_histogram_and_distance() -> None:
    """Capacities 2, 5, 9, 10 bin 1/1/2; against thirds: 0.5 × (1/12 + 1/12 + 1/6) = 1/6."""
    spec = next(x for x in LABELS["emotional_authenticity"] if x.label == "capacity_band")
    payloads = [{"emotional_capacity": c} for c in (2, 5, 9, 10)]
    dist = label_distribution(spec, payloads, (1 / 3, 1 / 3, 1 / 3))
    assert dist.observed == (1, 1, 2)
    assert dist.distance == pytest.approx(1 / 6, abs=1e-4)


def test_categorical_label_keeps_unknown_values() -> None:
    """A value the schema does not declare gets its own bin at the end, designed at 0."""
    spec = LabelSpec("kind", "Kind", "kind", names=("x", "y"))
    dist = label_distribution(spec, [{"kind": "x"}, {"kind": "z"}, {}], (0.5, 0.5))
    assert dist.bins == ("x", "y", "z")
    assert dist.observed == (1, 0, 1)
    assert dist.designed == (0.5, 0.5, 0.0)
    assert dist.distance == pytest.approx(0.5)  # 0.5 × (0 + 0.5 + 0.5)


# -- one type, end to end ---------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL_TYPES)
def test_measure_real_samples(datatype: str) -> None:
    """Shipped examples: distinct-2, openings per free-text field (no names), every label."""
    payloads = examples(datatype)
    d = measure(datatype, payloads, [None] * len(payloads))
    assert d.samples == len(payloads) and d.unreadable == 0
    assert d.distinct_2 is not None and 0.5 < d.distinct_2 <= 1
    fields = [f.field for f in d.openings]
    assert fields and not any(f.endswith("name") for f in fields)
    assert all(sum(o.count for o in f.top) <= f.texts for f in d.openings)
    assert [x.label for x in d.labels] == [x.label for x in LABELS[datatype]]
    assert all(x.total == len(payloads) for x in d.labels if x.label != "dominant_trait")


def test_measure_counts_unreadable_payloads() -> None:
    """A payload that no longer validates is left out of distinct-2 and counted."""
    payloads = [*examples("tension_building"), {"technique": "nonsense"}]
    d = measure("tension_building", payloads, [None] * len(payloads))
    assert d.unreadable == 1 and d.distinct_samples == len(payloads) - 1


def test_openings_show_a_stock_opening() -> None:
    """Ten samples whose dialogue starts the same way: that opening tops the field at 100%."""
    base = examples("emotional_authenticity")[0]
    payloads = [{**base, "dialogue": f"Look, I know {i} things."} for i in range(10)]
    d = measure("emotional_authenticity", payloads, [None] * 10)
    dialogue = next(f for f in d.openings if f.field == "dialogue")
    assert dialogue.top[0].words == "look i know" and dialogue.top[0].share == 1.0
    assert d.distinct_2 is not None and d.distinct_2 < 0.5  # the rest is copied too


def test_distinct_2_is_computed_over_a_capped_sample() -> None:
    """More than DISTINCT_CAP samples: distinct-2 is over DISTINCT_CAP of them."""
    base = examples("tension_building")
    payloads = [base[i % len(base)] for i in range(DISTINCT_CAP + 5)]
    d = measure("tension_building", payloads, [None] * len(payloads), design=design_of("x"))
    assert d.distinct_samples == DISTINCT_CAP and d.samples == DISTINCT_CAP + 5


def test_every_type_has_labels_and_a_second_facet() -> None:
    """Each registered type is measured: labels declared, and its sampler fills cells."""
    for name in REGISTRY:
        assert LABELS[name]
        assert design_of(name).cells, name
