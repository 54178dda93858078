"""The few-shot pools in prompts/examples: big enough, clean, and spread on purpose.

Each request shows 2-3 examples drawn from a pool, so a pool that repeats one pattern teaches
that pattern to every batch. These tests hold each pool to at least eight examples that pass
every generation-time check, and to the spreads that break each type's default pattern
(capacity bands, support levels, failure modes, dominant traits, techniques, score range, and
irony growth lines and authenticity notes that do not all read alike). The spread checks are
plain functions returning problems, so the last test can show each one failing on a pool that
has been narrowed on purpose.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest

from gen_service.domain.checking import check
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._base import OCEAN_TRAITS, jaccard
from gen_service.domain.datatypes.emotional_authenticity import capacity_band
from gen_service.domain.datatypes.tension_building import TECHNIQUES

EXAMPLES = Path(__file__).resolve().parents[2] / "prompts" / "examples"
MIN_POOL = 8
GROWTH_SIMILARITY_LIMIT = 0.5
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")

Row = dict[str, Any]


def pool(name: str) -> list[Row]:
    lines = (EXAMPLES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("//")]


def opening(text: str, count: int = 3) -> tuple[str, ...]:
    """The first ``count`` words of ``text``, lowercased, punctuation dropped."""
    return tuple(w.casefold() for w in _WORD.findall(text)[:count])


def margin(ocean: dict[str, float]) -> float:
    """How far the highest OCEAN score stands above the second highest."""
    top, second = sorted(ocean.values(), reverse=True)[:2]
    return round(top - second, 2)


# --- the spread each pool must have ----------------------------------------------------------


def emotional_problems(rows: list[Row]) -> list[str]:
    problems: list[str] = []
    bands = Counter(capacity_band(r["emotional_capacity"]) for r in rows)
    problems += [
        f"capacity band {band} has {bands[band]} example(s), wants 2"
        for band in ("low", "mid", "high")
        if bands[band] < 2
    ]
    levels = {r["support_level"] for r in rows}
    missing = {"none", "minimal", "partial", "full"} - levels
    if missing:
        problems.append(f"no example with support level {sorted(missing)}")
    failures = {r["failure_mode"] for r in rows} - {"none"}
    if len(failures) < 6:
        problems.append(f"only {len(failures)} failure modes ({sorted(failures)}), wants 6")
    if not any(
        r["support_level"] == "full"
        and r["failure_mode"] == "none"
        and capacity_band(r["emotional_capacity"]) == "high"
        for r in rows
    ):
        problems.append("no high-capacity example with full support and failure mode none")
    openings = [opening(r["authenticity_notes"]) for r in rows]
    for (i, a), (j, b) in combinations(enumerate(openings), 2):
        if a == b:
            problems.append(f"authenticity_notes {i} and {j} both open with {' '.join(a)!r}")
    for i, words in enumerate(openings):
        if "capacity" in words or any(w.isdigit() for w in words):
            problems.append(f"authenticity_notes {i} opens with the capacity ({' '.join(words)!r})")
    return problems


def irony_problems(rows: list[Row]) -> list[str]:
    problems: list[str] = []
    growth = [r["options"]["growth"]["dialogue"] for r in rows]
    for (i, a), (j, b) in combinations(enumerate(growth), 2):
        if (similarity := jaccard(a, b)) >= GROWTH_SIMILARITY_LIMIT:
            problems.append(f"growth dialogues {i} and {j} share {similarity:.0%} of their words")
    capacities = [r["character"]["emotional_capacity"] for r in rows]
    if min(capacities) > 3:
        problems.append("no character with capacity 1-3")
    if len({capacity_band(c) for c in capacities}) < 3:
        problems.append(f"capacities {sorted(capacities)} miss a band")
    tensions = [r["tension"] for r in rows]
    if max(tensions) - min(tensions) < 0.25:
        problems.append(f"tensions {sorted(tensions)} span less than 0.25")
    deltas = [r["options"]["tone_deaf"]["relationship_delta"] for r in rows]
    if all(d < 0 for d in deltas):
        problems.append("every tone-deaf option hurts at once; none lands well in the moment")
    if all(r["options"]["growth"]["relationship_delta"] > 0 for r in rows):
        problems.append("every growth option pays off at once; none costs something now")
    return problems


def personality_problems(rows: list[Row]) -> list[str]:
    problems: list[str] = []
    samples = [REGISTRY["personality_traits"].model.model_validate(r) for r in rows]
    dominants = {s.dominant_trait for s in samples}  # type: ignore[attr-defined]
    missing = [t for t in OCEAN_TRAITS if t not in dominants]
    if missing:
        problems.append(f"no example dominated by {missing}")
    margins = [margin(r["ocean"]) for r in rows]
    if min(margins) > 0.05:
        problems.append(f"no slight margin (<= 0.05) among {sorted(margins)}")
    if max(margins) < 0.4:
        problems.append(f"no overwhelming margin (>= 0.4) among {sorted(margins)}")
    lengths = {len(r["dialogue"]) for r in rows}
    if not {2, 8} <= lengths or len(lengths) < 5:
        problems.append(f"line counts {sorted(lengths)} do not span 2 to 8")
    return problems


def tension_problems(rows: list[Row]) -> list[str]:
    problems: list[str] = []
    techniques = Counter(r["technique"] for r in rows)
    problems += [
        f"technique {t} has {techniques[t]} example(s), wants 2"
        for t in TECHNIQUES
        if techniques[t] < 2
    ]
    timings = {"immediate", "short", "medium", "long"} - {r["payoff_timing"] for r in rows}
    if timings:
        problems.append(f"no example with payoff timing {sorted(timings)}")
    return problems


def relationship_problems(rows: list[Row]) -> list[str]:
    problems: list[str] = []
    scores = [r["score"] for r in rows]
    if sum(s < 0.3 for s in scores) < 2:
        problems.append(f"fewer than two scores below 0.3 in {sorted(scores)}")
    if sum(s > 0.7 for s in scores) < 2:
        problems.append(f"fewer than two scores above 0.7 in {sorted(scores)}")
    if sum(0.3 <= s <= 0.7 for s in scores) < 2:
        problems.append(f"fewer than two middling scores in {sorted(scores)}")
    kinds = {r["interaction_type"] for r in rows}
    if len(kinds) < len(rows) - 1:
        problems.append(f"only {len(kinds)} interaction types in {len(rows)} examples")
    mixed = sum(len({f["effect"] for f in r["factors"]}) > 1 for r in rows)
    if mixed < len(rows) // 2:
        problems.append(f"only {mixed} examples weigh factors with different effects")
    return problems


SPREAD: dict[str, Callable[[list[Row]], list[str]]] = {
    "emotional_authenticity": emotional_problems,
    "dramatic_irony": irony_problems,
    "personality_traits": personality_problems,
    "tension_building": tension_problems,
    "relationship_scoring": relationship_problems,
}


# --- the pools as shipped ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REGISTRY))
def test_pool_has_enough_examples_and_each_passes_every_check(name: str) -> None:
    """At least eight examples per type, each valid and free of any check's problem."""
    spec = REGISTRY[name]
    rows = pool(name)
    assert len(rows) >= MIN_POOL, f"{name} has {len(rows)} examples"
    for index, row in enumerate(rows):
        sample = spec.model.model_validate(row)
        assert check(spec, sample) == [], f"{name} example {index}"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_pool_examples_are_distinct(name: str) -> None:
    """No two examples share a character or their dedup text."""
    spec = REGISTRY[name]
    rows = pool(name)
    texts = [spec.text_for_dedup(spec.model.model_validate(r)) for r in rows]
    assert len(set(texts)) == len(texts)
    for (i, a), (j, b) in combinations(enumerate(texts), 2):
        assert jaccard(a, b) < 0.5, f"{name} examples {i} and {j} read alike"


@pytest.mark.parametrize("name", list(SPREAD))
def test_pool_has_the_designed_spread(name: str) -> None:
    """Each pool breaks its type's default pattern (see the spread functions above)."""
    assert SPREAD[name](pool(name)) == []


def test_personality_pool_shows_a_trait_without_naming_it() -> None:
    """A neuroticism- or agreeableness-dominated speaker never names the trait's feeling."""
    named = re.compile(r"\b(anxious|nervous|worried|scared|kind|nice|agreeable|caring)\b", re.I)
    quiet = [
        r
        for r in pool("personality_traits")
        if max(r["ocean"], key=r["ocean"].get) in ("neuroticism", "agreeableness")
        and not any(named.search(line) for line in r["dialogue"])
    ]
    assert quiet


# --- the spread checks can fail ------------------------------------------------------------


def _narrow_emotional(rows: list[Row]) -> list[Row]:
    rows[1]["authenticity_notes"] = rows[0]["authenticity_notes"]
    return [r for r in rows if r["support_level"] != "none"]


def _narrow_irony(rows: list[Row]) -> list[Row]:
    rows[1]["options"]["growth"]["dialogue"] = rows[0]["options"]["growth"]["dialogue"] + " Okay?"
    return rows


def _narrow_personality(rows: list[Row]) -> list[Row]:
    return [r for r in rows if max(r["ocean"], key=r["ocean"].get) != "agreeableness"]


def _narrow_tension(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r["payoff_timing"] != "immediate"]


def _narrow_relationship(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r["score"] >= 0.2]


NARROWED: dict[str, tuple[Callable[[list[Row]], list[Row]], str]] = {
    "emotional_authenticity": (_narrow_emotional, "support level"),
    "dramatic_irony": (_narrow_irony, "growth dialogues 0 and 1"),
    "personality_traits": (_narrow_personality, "agreeableness"),
    "tension_building": (_narrow_tension, "immediate"),
    "relationship_scoring": (_narrow_relationship, "below 0.3"),
}


@pytest.mark.parametrize("name", list(NARROWED))
def test_spread_checks_catch_a_narrowed_pool(name: str) -> None:
    """Each spread check reports a pool that lost what it guards."""
    narrow, expected = NARROWED[name]
    problems = SPREAD[name](narrow(copy.deepcopy(pool(name))))
    assert any(expected in p for p in problems), problems


def test_notes_opening_check_catches_shared_and_capacity_openings() -> None:
    """Two notes with one opening, or a note opening with the capacity, are reported."""
    rows = copy.deepcopy(pool("emotional_authenticity"))
    rows[2]["authenticity_notes"] = "At capacity 8 she has room; " + rows[2]["authenticity_notes"]
    rows[3]["authenticity_notes"] = rows[4]["authenticity_notes"]
    problems = emotional_problems(rows)
    assert any("opens with the capacity" in p for p in problems)
    assert any("both open with" in p for p in problems)
