"""Split assignment by cluster, the ratios, and the pure parts of an export's layout: its
columns, the diversity figure and the dataset card's YAML header."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gen_service.domain.dataset_card import (
    CHAT_COLUMNS,
    PROVENANCE,
    PROVENANCE_NAMES,
    DatasetConfig,
    ListOf,
    Scalar,
    Struct,
    columns_from_schema,
    dataset_row,
    distinct_n,
    front_matter,
)
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.splits import (
    DEFAULT_RATIOS,
    SPLITS,
    SplitRatios,
    cluster_key,
    selection_rank,
    split_of,
)


def test_split_of_is_deterministic_and_pinned() -> None:
    """The same cluster gets the same split on every call, and these pinned values never
    change: a change would move samples between splits of datasets already published."""
    ratios = SplitRatios(0.8, 0.1, 0.1)
    assert [split_of(c, ratios) for c in range(1, 13)] == [
        split_of(c, ratios) for c in range(1, 13)
    ]
    pinned = {c: split_of(c, ratios) for c in PINNED_SPLITS}
    assert pinned == PINNED_SPLITS


PINNED_SPLITS = {
    1: "train",
    4: "validation",
    14: "test",
    42: "validation",
    1000: "test",
    123456: "train",
}


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.5, 0.3, 0.2), (0.34, 0.33, 0.33)])
def test_split_of_follows_the_ratios(ratios: tuple[float, float, float]) -> None:
    """Over 20,000 clusters each split's share is within 0.015 of its ratio (more than five
    standard deviations)."""
    shares = SplitRatios(*ratios)
    counts = Counter(split_of(c, shares) for c in range(20_000))
    for split, ratio in zip(SPLITS, ratios, strict=True):
        assert abs(counts[split] / 20_000 - ratio) < 0.015, (split, counts)


@given(
    st.integers(min_value=0, max_value=2**62),
    st.sampled_from([(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.9, 0.0, 0.1)]),
)
def test_a_split_with_no_share_gets_nothing(cluster: int, ratios: tuple[float, ...]) -> None:
    """A split whose share is 0 never receives a cluster."""
    shares = SplitRatios(*ratios).shares()
    assert shares[split_of(cluster, SplitRatios(*ratios))] > 0


def test_split_depends_on_the_cluster_alone() -> None:
    """Every sample of a cluster lands where the cluster does, whatever its own id; a sample
    in no cluster is keyed by its own id, so founding a cluster later keeps its split."""
    for cluster in range(1, 200):
        members = [cluster_key(cluster, sample_id) for sample_id in range(cluster, cluster + 50)]
        assert {split_of(m, DEFAULT_RATIOS) for m in members} == {split_of(cluster, DEFAULT_RATIOS)}
    assert cluster_key(None, 77) == 77
    assert split_of(cluster_key(None, 77), DEFAULT_RATIOS) == split_of(77, DEFAULT_RATIOS)
    assert split_of(7, DEFAULT_RATIOS) == split_of("7", DEFAULT_RATIOS)


def test_selection_rank_does_not_favour_a_split() -> None:
    """The 2,000 lowest balance ranks of 20,000 ids fall into the splits by the ratios, so a
    balanced export keeps the split shares (a selection by the split hash would not)."""
    lowest = sorted(range(20_000), key=lambda i: selection_rank(i, "balance"))[:2000]
    counts = Counter(split_of(i, DEFAULT_RATIOS) for i in lowest)
    assert abs(counts["train"] / 2000 - 0.8) < 0.04, counts
    assert selection_rank(5, "balance") != selection_rank(5, "diversity")
    assert 0 <= selection_rank(2**40, "balance") < 2**63


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.8,0.1,0.1", (0.8, 0.1, 0.1)),
        (" 0.7 , 0.15 , 0.15 ", (0.7, 0.15, 0.15)),
        ("1,0,0", (1.0, 0.0, 0.0)),
        ("0.8,0.1,0.1000005", (0.8, 0.1, 0.1000005)),
    ],
)
def test_ratios_parse(text: str, expected: tuple[float, float, float]) -> None:
    """Three shares summing to 1 (within 1e-6) parse."""
    ratios = SplitRatios.parse(text)
    assert (ratios.train, ratios.validation, ratios.test) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0.8,0.1", "three comma-separated"),
        ("0.8,0.1,0.1,0", "three comma-separated"),
        ("0.8,0.1,x", "not a number"),
        ("0.8,0.1,0.2", "sum to 1"),
        ("0.8,0.1,0.10001", "sum to 1"),
        ("1.2,-0.1,-0.1", "≥ 0"),
        ("nan,0.5,0.5", "≥ 0"),
    ],
)
def test_bad_ratios_are_refused(text: str, says: str) -> None:
    """Wrong counts, non-numbers, negative shares and sums off 1 are refused with the reason."""
    with pytest.raises(ValueError, match=says):
        SplitRatios.parse(text)


def test_columns_follow_each_data_types_model() -> None:
    """Every model field (and derived field) is a column with its type; nested models are
    structs and lists of models are lists of structs."""
    traits = {
        c.name: c.type
        for c in columns_from_schema(
            REGISTRY["personality_traits"].model.model_json_schema(mode="serialization")
        )
    }
    assert traits["dialogue"] == ListOf(Scalar("string"))
    assert traits["dominant_trait"] == Scalar("string")
    ocean = traits["ocean"]
    assert isinstance(ocean, Struct)
    assert [c.name for c in ocean.fields] == [
        "openness",
        "conscientiousness",
        "extraversion",
        "agreeableness",
        "neuroticism",
    ]
    assert all(c.type == Scalar("float64") for c in ocean.fields)
    scoring = {
        c.name: c.type
        for c in columns_from_schema(
            REGISTRY["relationship_scoring"].model.model_json_schema(mode="serialization")
        )
    }
    factors = scoring["factors"]
    assert isinstance(factors, ListOf) and isinstance(factors.item, Struct)
    assert [c.name for c in factors.item.fields] == ["factor", "effect"]
    assert scoring["score"] == Scalar("float64")
    capacity = {
        c.name: c.type
        for c in columns_from_schema(
            REGISTRY["emotional_authenticity"].model.model_json_schema(mode="serialization")
        )
    }["emotional_capacity"]
    assert capacity == Scalar("int64")


def test_provenance_never_collides_with_a_training_field() -> None:
    """No data type has a field named like a provenance column, and a payload that did would
    be refused rather than silently overwritten."""
    for spec in REGISTRY.values():
        names = {c.name for c in columns_from_schema(spec.model.model_json_schema())}
        assert not names & PROVENANCE_NAMES, spec.name
    provenance = {c.name: None for c in PROVENANCE}
    assert list(dataset_row({"a": 1}, provenance)) == ["a", *[c.name for c in PROVENANCE]]
    with pytest.raises(ValueError, match="collide"):
        dataset_row({"id": 3}, provenance)


def test_distinct_n() -> None:
    """Distinct-2 is unique word pairs over all pairs, pairs do not cross texts, and a text
    without pairs counts for nothing."""
    assert distinct_n(["a b c", "a b c"]) == pytest.approx(2 / 4)
    assert distinct_n(["a b", "b a"]) == 1.0
    assert distinct_n(["The cat, the CAT."]) == pytest.approx(2 / 3)
    assert distinct_n(["one"]) is None
    assert math.isclose(distinct_n(["x y z w"], n=3) or 0, 1.0)


def test_front_matter_declares_configs_and_features() -> None:
    """The YAML header lists each config's files per non-empty split and declares its
    features in the form the datasets library reads."""
    columns = columns_from_schema(
        REGISTRY["relationship_scoring"].model.model_json_schema(mode="serialization")
    )
    text = front_matter(
        [
            DatasetConfig(
                "relationship_scoring",
                {"train": "relationship_scoring/train.jsonl", "test": "x y/test.jsonl"},
                columns + PROVENANCE,
            ),
            DatasetConfig("relationship_scoring_chat", {"train": "c.jsonl"}, CHAT_COLUMNS),
        ],
        pretty_name="t: x",
    )
    assert text.startswith("---\n") and text.endswith("---\n")
    meta = yaml.safe_load(text.strip().strip("-"))
    assert meta["pretty_name"] == "t: x"
    first = meta["configs"][0]
    assert first["config_name"] == "relationship_scoring"
    assert first["data_files"] == [
        {"split": "train", "path": "relationship_scoring/train.jsonl"},
        {"split": "test", "path": "x y/test.jsonl"},
    ]
    features = {f["name"]: f for f in meta["dataset_info"][0]["features"]}
    assert features["score"] == {"name": "score", "dtype": "float64"}
    assert features["factors"]["list"] == [
        {"name": "factor", "dtype": "string"},
        {"name": "effect", "dtype": "string"},
    ]
    assert features["quality"]["dtype"] == "float64"
    assert features["judged"]["dtype"] == "bool"
    chat = {f["name"]: f for f in meta["dataset_info"][1]["features"]}
    assert chat["messages"]["list"] == [
        {"name": "role", "dtype": "string"},
        {"name": "content", "dtype": "string"},
    ]
