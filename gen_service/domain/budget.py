"""Token budgets (pure): how many items one request can ask for so that the answer fits.

On one GPU the scarce thing is decode time; a request whose answer does not fit ``num_predict``
stops at ``length`` and, before this module, its output was thrown away. So each request is
sized from what a data type's items cost on its model: a moving estimate of output tokens per
item (seeded from the few-shot examples' length), the tokens a request spends outside its items
(Qwen3's thinking, the JSON wrapper), and the prompt's size in tokens (its characters times a
learned ratio). The answer must fit ``num_predict`` with a margin, and prompt plus answer must
fit ``num_ctx``; ``batch_size`` is an upper bound.

Estimates move by exponential smoothing (:data:`ALPHA`) with each successful request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CHARS_PER_TOKEN = 3.6  # English JSON and prose in Qwen3's and Llama's tokenizers, roughly
ALPHA = 0.2  # weight of a new observation in the moving estimates
MARGIN = 0.85  # the expected answer may use this share of num_predict, no more
SAFETY_TOKENS = 64  # kept free in the context beyond prompt and answer (chat template, BOS)
WRAPPER_TOKENS = 16  # {"samples": [ ... ]}
THINKING_SEED = 1200  # tokens a thinking model spends before answering, until measured


@dataclass(slots=True)
class Estimate:
    """What one request of a (data type, model) costs, as last measured."""

    per_item: float  # output tokens per item
    overhead: float  # output tokens per request outside the items (thinking, wrapper)
    prompt_ratio: float = 1 / CHARS_PER_TOKEN  # prompt tokens per prompt character
    prompt_chars: int = 0  # the last request's prompt length, to size the next batch
    observations: int = 0


@dataclass(frozen=True, slots=True)
class Fit:
    """How to size one request."""

    items: int  # at most this many items (at least 1)
    num_predict: int  # the request's output budget: never more than the context holds
    room: int  # output tokens the context has room for after the prompt
    expected: int  # output tokens ``items`` items are expected to take


def seed_estimate(examples: Sequence[str], *, think: bool) -> Estimate:
    """A first estimate from the few-shot examples (compact JSON) before anything is measured:
    their mean length in tokens, plus 10 %; thinking models get a thinking allowance."""
    if examples:
        mean_chars = sum(len(e) for e in examples) / len(examples)
        per_item = mean_chars / CHARS_PER_TOKEN * 1.1
    else:
        per_item = 400.0
    return Estimate(per_item=per_item, overhead=WRAPPER_TOKENS + (THINKING_SEED if think else 0))


def observe(
    estimate: Estimate,
    *,
    items: int,
    eval_tokens: int,
    thinking_tokens: int,
    prompt_tokens: int,
    prompt_chars: int,
) -> None:
    """Move the estimate toward one successful request's figures."""
    if items > 0 and eval_tokens > 0:
        answer = max(0, eval_tokens - thinking_tokens - WRAPPER_TOKENS)
        estimate.per_item = _smooth(estimate.per_item, answer / items, estimate.observations)
        estimate.overhead = _smooth(
            estimate.overhead, thinking_tokens + WRAPPER_TOKENS, estimate.observations
        )
    if prompt_chars > 0:
        estimate.prompt_chars = prompt_chars
    if prompt_tokens > 0 and prompt_chars > 0:
        estimate.prompt_ratio = _smooth(
            estimate.prompt_ratio, prompt_tokens / prompt_chars, estimate.observations
        )
    estimate.observations += 1


def _smooth(old: float, new: float, observations: int) -> float:
    # The first measurement replaces the seed outright: the seed is only a guess.
    return new if observations == 0 else old + ALPHA * (new - old)


def fit(estimate: Estimate, *, num_predict: int, num_ctx: int, prompt_chars: int, cap: int) -> Fit:
    """The most items (up to ``cap``) whose expected answer fits ``num_predict`` with the
    margin, and the output budget the context can hold after the prompt."""
    prompt_tokens = math.ceil(prompt_chars * estimate.prompt_ratio)
    room = max(1, num_ctx - prompt_tokens - SAFETY_TOKENS)
    budget = min(num_predict, room)
    usable = budget * MARGIN - estimate.overhead
    items = max(1, min(cap, math.floor(usable / max(estimate.per_item, 1.0))))
    expected = math.ceil(estimate.overhead + items * estimate.per_item)
    return Fit(items=items, num_predict=budget, room=room, expected=expected)


def grown_budget(num_predict: int, room: int) -> int:
    """The output budget for a retry after an answer that did not fit and had no complete
    item: double it, never past what the context holds."""
    return min(room, max(num_predict + 1, num_predict * 2))
