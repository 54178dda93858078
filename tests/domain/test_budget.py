"""Token budgets (pure): sizing a request so its answer fits, and learning what items cost."""

from __future__ import annotations

import json

import pytest

from gen_service.domain import budget
from gen_service.domain.parsing import complete_items


def test_seed_comes_from_the_examples_and_thinking() -> None:
    """Before anything is measured, an item costs about an example's length in tokens; a
    thinking model pays a thinking allowance per request."""
    examples = [json.dumps({"text": "x" * 720})] * 2
    plain = budget.seed_estimate(examples, think=False)
    assert plain.per_item == pytest.approx(len(examples[0]) / budget.CHARS_PER_TOKEN * 1.1)
    thinking = budget.seed_estimate(examples, think=True)
    assert thinking.overhead == plain.overhead + budget.THINKING_SEED


def test_fit_respects_num_predict_with_a_margin_and_batch_size() -> None:
    """6000 tokens at 85 %, less 16 of overhead, over 380 per item: 13 items; never more
    than the cap."""
    estimate = budget.Estimate(per_item=380, overhead=16)
    fit = budget.fit(estimate, num_predict=6000, num_ctx=131072, prompt_chars=3600, cap=25)
    assert fit.items == (6000 * 85 // 100 - 16) // 380 == 13
    assert fit.num_predict == 6000
    assert budget.fit(estimate, num_predict=6000, num_ctx=131072, prompt_chars=0, cap=5).items == 5


def test_fit_keeps_prompt_and_answer_inside_the_context() -> None:
    """A prompt of ~3,000 tokens in an 8,192 context leaves 5,128 tokens: the budget and the
    items shrink to it (the production config's 25 personality samples do not fit)."""
    estimate = budget.Estimate(per_item=380, overhead=16, prompt_ratio=1 / 3.6)
    fit = budget.fit(estimate, num_predict=6000, num_ctx=8192, prompt_chars=10800, cap=25)
    assert fit.room == 8192 - 3000 - budget.SAFETY_TOKENS
    assert fit.num_predict == fit.room
    assert fit.items == int((fit.room * 0.85 - 16) // 380)
    assert fit.expected <= fit.num_predict


def test_fit_asks_for_one_item_even_when_one_may_not_fit() -> None:
    """A request always asks for something; a too-small budget shows as a truncation."""
    estimate = budget.Estimate(per_item=5000, overhead=16)
    assert budget.fit(estimate, num_predict=1000, num_ctx=8192, prompt_chars=100, cap=10).items == 1


def test_observe_replaces_the_seed_then_smooths() -> None:
    """The first measurement replaces the guess; later ones move it by ALPHA."""
    estimate = budget.Estimate(per_item=100, overhead=16)
    budget.observe(
        estimate, items=4, eval_tokens=1616, thinking_tokens=0, prompt_tokens=900, prompt_chars=3600
    )
    assert estimate.per_item == pytest.approx(400)
    assert estimate.prompt_ratio == pytest.approx(0.25)
    budget.observe(
        estimate, items=2, eval_tokens=1016, thinking_tokens=0, prompt_tokens=0, prompt_chars=0
    )
    assert estimate.per_item == pytest.approx(400 + budget.ALPHA * (500 - 400))


def test_thinking_counts_as_overhead_not_per_item() -> None:
    """Tokens spent thinking are a per-request cost: they do not inflate the per-item cost."""
    estimate = budget.Estimate(per_item=100, overhead=16)
    budget.observe(
        estimate, items=5, eval_tokens=3016, thinking_tokens=1000, prompt_tokens=0, prompt_chars=0
    )
    assert estimate.per_item == pytest.approx(400)
    assert estimate.overhead == pytest.approx(1016)


def test_grown_budget_never_exceeds_the_context() -> None:
    """A retry doubles the budget but never past the room the context has."""
    assert budget.grown_budget(1000, room=5000) == 2000
    assert budget.grown_budget(4000, room=5000) == 5000


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('{"samples": [{"a": 1}, {"b": [2, 3]}, {"c": "unfin', 2),
        ('```json\n{"samples": [{"a": "x]"}, ', 1),
        ('<think>a list [1, 2]</think>{"samples": [{"a": 1}', 1),
        ('{"samples": [', 0),
        ('[{"a": 1}, {"a": 2}, {"a"', 2),
        ("no json at all", 0),
    ],
)
def test_complete_items_of_a_truncated_answer(text: str, kept: int) -> None:
    """The complete items before the cut are kept, the one being written is not."""
    assert len(complete_items(text)) == kept
