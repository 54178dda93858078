"""The judge's prompts in prompts/judge: they load, render a blind sample, ask for the right
labels, and the example verdicts they show are verdicts the service would accept.

Each type template holds one good and one bad example as single lines: ``Sample: {...}`` (a
blind view, as the judge would see it) followed by ``Verdict: {...}`` (the verdict it deserves).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gen_service.domain.datatypes import REGISTRY, DataTypeSpec
from gen_service.domain.judging import (
    DIMENSIONS,
    JUDGE_SYSTEM,
    JudgeLibrary,
    VerdictBase,
    blind_view,
    verdict_model,
)

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
JUDGE = PROMPTS / "judge"

# Words the label task of each type must use; tension has no labels, so none of them.
LABEL_TASK: dict[str, tuple[str, ...]] = {
    "emotional_authenticity": (
        "capacity_band",
        "low (1-3)",
        "mid (4-7)",
        "high (8-10)",
        "support_level",
        "none",
        "minimal",
        "partial",
        "full",
    ),
    "dramatic_irony": (
        "option_kinds",
        "in the order shown",
        "each kind exactly once",
        "tone_deaf",
        "misguided",
        "growth",
        "reveals_hidden_knowledge",
    ),
    "personality_traits": (
        "from the dialogue alone",
        "openness",
        "conscientiousness",
        "extraversion",
        "agreeableness",
        "neuroticism",
        "from 0 to 1",
        "dominant_trait",
    ),
    "relationship_scoring": ("score", "from 0 to 1", "hidden"),
}
ALL_LABEL_WORDS = ("labels", "capacity_band", "option_kinds", "dominant_trait", "support_level")


def templates() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(JUDGE.glob("*.j2"))}


def library() -> JudgeLibrary:
    return JudgeLibrary(templates(), sources={p.stem: str(p) for p in sorted(JUDGE.glob("*.j2"))})


def first_example(spec: DataTypeSpec) -> Any:
    path = PROMPTS / "examples" / f"{spec.name}.jsonl"
    line = next(x for x in path.read_text(encoding="utf-8").splitlines() if x.strip())
    return spec.model.model_validate(json.loads(line))


def marked(text: str, marker: str) -> list[dict[str, Any]]:
    """The JSON objects on the lines of ``text`` that start with ``marker``."""
    return [
        json.loads(line[len(marker) :]) for line in text.splitlines() if line.startswith(marker)
    ]


def test_there_is_a_system_prompt_and_one_template_per_type() -> None:
    assert set(templates()) == {JUDGE_SYSTEM, *REGISTRY}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_template_renders_the_blind_sample(name: str) -> None:
    """The rendered prompt holds the blind view as pretty JSON, after the examples, and no
    field the blind view hides."""
    spec = REGISTRY[name]
    view, _ = blind_view(spec, first_example(spec), seed=7)
    _, user = library().render(spec, view)
    shown = json.dumps(view, indent=2, ensure_ascii=False)
    assert shown in user
    assert user.index(shown) > user.rindex("Verdict: ")
    assert spec.title in user


@pytest.mark.parametrize("name", list(REGISTRY))
def test_label_task_is_there_only_for_types_with_labels(name: str) -> None:
    spec = REGISTRY[name]
    system, user = library().render(spec, blind_view(spec, first_example(spec), seed=7)[0])
    has_labels = spec.judge is not None and spec.judge.labels is not None
    if has_labels:
        for words in LABEL_TASK[name]:
            assert words in user, f"{name}: {words!r}"
        assert "labels" in system
    else:
        template = templates()[name]
        for words in ALL_LABEL_WORDS:
            assert words not in template, f"{name}: {words!r}"
            assert words not in system, f"{name}: {words!r}"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_rubric_names_the_memo_bars(name: str) -> None:
    text = templates()[name]
    for words in ("0.85", "0.90", "0.92", "0.80", "0.75", "0.70", "regenerated", *DIMENSIONS):
        assert words in text, f"{name}: {words!r}"


def _verdicts(name: str) -> list[VerdictBase]:
    model = verdict_model(REGISTRY[name])
    return [model.model_validate(v) for v in marked(templates()[name], "Verdict: ")]


def _mean(verdict: VerdictBase) -> float:
    return sum(float(getattr(verdict, d)) for d in DIMENSIONS) / len(DIMENSIONS)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_example_verdicts_validate_and_grade_good_above_bad(name: str) -> None:
    """Two example verdicts, each valid for the type: the good one at the shipping bar on
    every dimension, the bad one below the regeneration line with issues named."""
    good, bad = _verdicts(name)
    assert all(float(getattr(good, d)) >= 0.85 for d in DIMENSIONS)
    assert _mean(bad) < 0.7
    assert bad.issues and len(bad.issues) > len(good.issues)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_example_samples_are_blind_views(name: str) -> None:
    """Each example sample shows exactly the fields the judge is shown of a real sample."""
    spec = REGISTRY[name]
    view, _ = blind_view(spec, first_example(spec), seed=7)
    samples = marked(templates()[name], "Sample: ")
    assert len(samples) == 2
    for sample in samples:
        assert list(sample) == list(view)
        if name == "dramatic_irony":
            assert len(sample["options"]) == 3
            for option in sample["options"]:
                assert set(option) == set(view["options"][0])


def test_irony_examples_label_each_kind_once_and_flag_the_leak() -> None:
    good, bad = _verdicts("dramatic_irony")
    for verdict in (good, bad):
        assert sorted(verdict.labels.option_kinds) == ["growth", "misguided", "tone_deaf"]  # type: ignore[attr-defined]
    assert good.labels.reveals_hidden_knowledge is False  # type: ignore[attr-defined]
    assert bad.labels.reveals_hidden_knowledge is True  # type: ignore[attr-defined]


def test_personality_examples_name_their_highest_trait() -> None:
    for verdict in _verdicts("personality_traits"):
        labels = verdict.labels  # type: ignore[attr-defined]
        scores = labels.ocean.as_dict()
        assert scores[labels.dominant_trait] == max(scores.values())


def test_system_prompt_asks_for_json_only_and_no_overall() -> None:
    text = templates()[JUDGE_SYSTEM]
    for words in ("JSON only", "clinical psychologist", "editor", "generic prose", "overall"):
        assert words in text
    assert "Do not give an overall score" in text


def test_judge_prompts_stay_compact() -> None:
    """A type prompt is about 1,500 tokens before the sample (some 4 characters a token)."""
    for name, text in templates().items():
        assert len(text) < 7500, f"{name} is {len(text)} characters"
