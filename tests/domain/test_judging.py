"""The judge's pure part: blind views, label agreement, the overall score, batch flags."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.judging import (
    DIMENSIONS,
    Assessment,
    VerdictBase,
    assess,
    batch_verdict,
    blind_view,
    refinement_text,
    verdict_model,
    verdict_schema,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "prompts" / "examples"


def sample(name: str, index: int = 0) -> Any:
    lines = [x for x in (EXAMPLES / f"{name}.jsonl").read_text().splitlines() if x.strip()]
    return REGISTRY[name].model.model_validate(json.loads(lines[index]))


def verdict(name: str, labels: dict[str, Any] | None, score: float = 0.9) -> VerdictBase:
    data: dict[str, Any] = {d: score for d in DIMENSIONS}
    data |= {"issues": ["The dialogue is a little long."], "recommendation": "Cut a line."}
    if labels is not None:
        data["labels"] = labels
    return verdict_model(REGISTRY[name]).model_validate(data)


def test_blind_views_hide_the_labels() -> None:
    """The judge never sees the fields it must re-derive."""
    hidden = {
        "personality_traits": ("ocean", "evidence", "dominant_trait"),
        "emotional_authenticity": ("emotional_capacity", "support_level", "failure_mode"),
        "relationship_scoring": ("score", "rationale"),
    }
    for name, fields in hidden.items():
        view, _ = blind_view(REGISTRY[name], sample(name), seed=1)
        assert not set(fields) & set(view), name
    irony, order = blind_view(REGISTRY["dramatic_irony"], sample("dramatic_irony"), seed=1)
    assert isinstance(irony["options"], list) and len(irony["options"]) == 3
    assert "relationship_delta" not in json.dumps(irony["options"])
    assert sorted(order) == ["growth", "misguided", "tone_deaf"]
    truth = sample("dramatic_irony").options
    for shown, kind in zip(irony["options"], order, strict=True):
        assert shown["dialogue"] == getattr(truth, kind).dialogue


def test_irony_shuffle_is_seeded_and_varies() -> None:
    """Same seed, same order; the orders over many seeds are not all the same."""
    spec, s = REGISTRY["dramatic_irony"], sample("dramatic_irony")
    assert blind_view(spec, s, 5)[1] == blind_view(spec, s, 5)[1]
    assert len({tuple(blind_view(spec, s, seed)[1]) for seed in range(20)}) > 1


def test_personality_agreement_needs_close_scores_and_the_same_top() -> None:
    """MAE <= 0.15 and the same dominant trait agree; a far profile does not."""
    spec, s = REGISTRY["personality_traits"], sample("personality_traits")
    close = {t: round(min(1, v + 0.05), 2) for t, v in s.ocean.as_dict().items()}
    good = assess(
        spec,
        s,
        verdict("personality_traits", {"ocean": close, "dominant_trait": s.dominant_trait}),
        None,
    )
    assert good.labels is not None and good.labels.ok and good.labels.agreement > 0.9
    far = {t: round(1 - v, 2) for t, v in s.ocean.as_dict().items()}
    top = max(far, key=lambda t: far[t])
    bad = assess(
        spec, s, verdict("personality_traits", {"ocean": far, "dominant_trait": top}), None
    )
    assert bad.labels is not None and not bad.labels.ok and "mean error" in bad.labels.detail


def test_irony_agreement_needs_every_option_right_and_no_leak() -> None:
    """All three kinds in the shown order agree; a swap or a revealed secret does not."""
    spec, s = REGISTRY["dramatic_irony"], sample("dramatic_irony")
    _, order = blind_view(spec, s, 2)
    right = assess(
        spec,
        s,
        verdict("dramatic_irony", {"option_kinds": order, "reveals_hidden_knowledge": False}),
        order,
    )
    assert right.labels is not None and right.labels.ok and right.labels.agreement == 1
    swapped = [order[1], order[0], order[2]]
    wrong = assess(
        spec,
        s,
        verdict("dramatic_irony", {"option_kinds": swapped, "reveals_hidden_knowledge": False}),
        order,
    )
    assert wrong.labels is not None and not wrong.labels.ok
    leak = assess(
        spec,
        s,
        verdict("dramatic_irony", {"option_kinds": order, "reveals_hidden_knowledge": True}),
        order,
    )
    assert leak.labels is not None and not leak.labels.ok and "cannot have" in leak.labels.detail


def test_emotional_agreement_band_and_support() -> None:
    """Same capacity band and support within one step agree; another band does not."""
    spec, s = REGISTRY["emotional_authenticity"], sample("emotional_authenticity")
    band = "low" if s.emotional_capacity <= 3 else "mid" if s.emotional_capacity <= 7 else "high"
    good = assess(
        spec,
        s,
        verdict(
            "emotional_authenticity", {"capacity_band": band, "support_level": s.support_level}
        ),
        None,
    )
    assert good.labels is not None and good.labels.ok
    other = next(b for b in ("low", "mid", "high") if b != band)
    bad = assess(
        spec,
        s,
        verdict(
            "emotional_authenticity", {"capacity_band": other, "support_level": s.support_level}
        ),
        None,
    )
    assert bad.labels is not None and not bad.labels.ok


def test_relationship_agreement_is_a_close_blind_score() -> None:
    """A blind score within 0.15 agrees; one 0.3 away does not."""
    spec, s = REGISTRY["relationship_scoring"], sample("relationship_scoring")
    near = assess(
        spec, s, verdict("relationship_scoring", {"score": min(1.0, s.score + 0.1)}), None
    )
    assert near.labels is not None and near.labels.ok
    far = assess(
        spec, s, verdict("relationship_scoring", {"score": 1.0 if s.score < 0.5 else 0.0}), None
    )
    assert far.labels is not None and not far.labels.ok


def test_tension_has_no_labels() -> None:
    """Tension building has nothing to re-derive: agreement is None, the verdict is the base."""
    spec = REGISTRY["tension_building"]
    assert verdict_model(spec) is VerdictBase
    result = assess(spec, sample("tension_building"), verdict("tension_building", None), None)
    assert result.labels is None and result.labels_ok is None


def test_overall_is_the_mean_of_the_four_dimensions() -> None:
    """The service computes the overall score; the schema does not even ask the model for it."""
    spec = REGISTRY["tension_building"]
    data = {"authenticity": 0.9, "consistency": 0.7, "complexity": 0.5, "usability": 0.3}
    v = VerdictBase.model_validate(data | {"issues": [], "recommendation": "More."})
    assert assess(spec, sample("tension_building"), v, None).overall == pytest.approx(0.6)
    assert "overall" not in json.dumps(verdict_schema(spec))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_verdict_schema_is_judge_shaped(name: str) -> None:
    """Every verdict schema has the four dimensions and a recommendation (what the fake's
    judge and any grammar compiler see), labels where the type has them, and no $ref."""
    schema = verdict_schema(REGISTRY[name])
    assert {*DIMENSIONS, "issues", "recommendation"} <= set(schema["properties"])
    assert ("labels" in schema["properties"]) == (name != "tension_building")
    assert "$ref" not in json.dumps(schema)


def _assessment(overall: float, ok: bool | None = True) -> Assessment:
    from gen_service.domain.datatypes._base import LabelResult

    labels = None if ok is None else LabelResult(1.0 if ok else 0.2, ok, "" if ok else "off")
    return Assessment(overall, {}, labels, ("vague",), "Be concrete.", None)


def test_batch_is_flagged_below_the_bar_or_on_disagreement() -> None:
    """A batch is flagged when its judged mean is below flag_below or any labels disagree."""
    assert not batch_verdict([_assessment(0.8), _assessment(0.75)], 0.7).flagged
    low = batch_verdict([_assessment(0.6), _assessment(0.7)], 0.7)
    assert low.flagged and "below 0.70" in (low.reason or "")
    disagree = batch_verdict([_assessment(0.9), _assessment(0.9, ok=False)], 0.7)
    assert disagree.flagged and "labels disagree" in (disagree.reason or "")
    assert batch_verdict([_assessment(0.9, ok=None)], 0.7).flagged is False


def test_refinement_lists_recommendations_and_issues() -> None:
    """The regeneration prompt gets the judge's recommendations and issues as a list."""
    text = refinement_text(["Be concrete."], ["vague", "vague", "too long"])
    assert text.splitlines() == ["- Be concrete.", "- Avoid: vague", "- Avoid: too long"]


def test_blind_view_is_seeded_per_sample() -> None:
    """random.Random is the only randomness: a sample judged twice is shown the same way."""
    spec = REGISTRY["dramatic_irony"]
    s = sample("dramatic_irony")
    assert blind_view(spec, s, random.Random(3).randrange(99)) == blind_view(
        spec, s, random.Random(3).randrange(99)
    )
