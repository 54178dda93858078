"""A batch's rows (domain/rows.py): the same rows whether the event loop or a check worker
makes them."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from gen_service.domain.checking import rules_for
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.rows import _brief, _to_json, check_answers, check_answers_in_worker

EXAMPLES = Path(__file__).resolve().parents[2] / "prompts" / "examples"


def answers_of(name: str) -> list[tuple[int, Any]]:
    """The type's few-shot examples as a batch's answers, plus an item that fails the schema
    and a copy of an example with every free text a number, at their briefs' positions."""
    lines = (EXAMPLES / f"{name}.jsonl").read_text().splitlines()
    items: list[Any] = [json.loads(x) for x in lines if x.strip() and not x.startswith("//")]
    items.append({"not": "a sample"})
    items.append(numbered(items[0]))
    return list(enumerate(items))


def numbered(value: Any) -> Any:
    """``value`` with its long strings (the free text: names and enum values are short) made
    numbers, which the content checks reject as not prose."""
    if isinstance(value, str):
        return "12 14 2009 7 55 1024 3 8" if len(value) > 25 else value
    if isinstance(value, dict):
        return {k: numbered(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbered(v) for v in value]
    return value


@pytest.mark.parametrize("name", list(REGISTRY))
def test_a_worker_makes_the_rows_the_event_loop_makes(name: str) -> None:
    """check_answers_in_worker, which reads the briefs back from their JSON, gives the rows
    check_answers gives from the briefs themselves: accepted, rejected by a brief or a content
    check, and invalid items alike."""
    spec = REGISTRY[name]
    answers = answers_of(name)
    contexts = spec.sample_contexts(random.Random(7), len(answers))
    briefs = [_to_json(c.to_json()) for c in contexts]
    rules = rules_for(spec, None)
    here = check_answers(spec, answers, contexts, briefs, rules)
    there = check_answers_in_worker(name, answers, briefs, dict(rules))
    assert there == here
    assert len(here) == len(answers)
    statuses = {row.status for row in here}
    assert "rejected" in statuses
    assert any(row.reason and row.reason.startswith("schema:") for row in here)
    assert any(row.reason and "not_prose" in row.reason for row in here)
    assert [row.brief_json for row in here] == [briefs[row.item_index] for row in here]


def test_rows_come_in_brief_order_whatever_order_the_answers_came() -> None:
    """A follow-up request's items arrive after the first answer's; the rows are in brief
    order, valid items first, as the writer stores them."""
    name = "personality_traits"
    spec = REGISTRY[name]
    answers = answers_of(name)
    contexts = spec.sample_contexts(random.Random(3), len(answers))
    briefs = [_to_json(c.to_json()) for c in contexts]
    rules = rules_for(spec, None)
    shuffled = list(answers)
    random.Random(1).shuffle(shuffled)
    assert check_answers(spec, shuffled, contexts, briefs, rules) == check_answers(
        spec, answers, contexts, briefs, rules
    )


def test_a_brief_only_the_standard_library_reads_is_read_by_it() -> None:
    """orjson reads the briefs; what it refuses and ``json.dumps`` writes (NaN) still reads."""
    assert _brief('{"pins": {"a": {"min": 0.25, "max": 0.5}}}') == {
        "pins": {"a": {"min": 0.25, "max": 0.5}}
    }
    value = _brief(json.dumps({"x": float("nan")}))
    assert math.isnan(value["x"])
