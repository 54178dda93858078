"""Steps 1 to 3 of the arithmetic: the speed and VRAM model.

A model's aggregate decode rate ``R`` (configured or measured, with its GPU share from the
VRAM budget), the tokens each data type spends per accepted sample ``T``, and so its speed
``v = R / T``; the known Qwen3 sizes behind the GPU share; the judge's tokens per verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gen_service.domain.planner._inputs import Measured, ModelInput, PlanInput, TypeInput
from gen_service.domain.planner._limits import EPS
from gen_service.domain.planner._results import ModelPlan, TypeRate
from gen_service.domain.vram import (
    DEFAULT_KV_BYTES_PER_TOKEN,
    estimate_residency,
    kv_bytes_per_token,
    kv_cache_bytes,
)

SHARING_EXPONENT = 0.6
"""``k`` requests decoding at once give ``k ** 0.6`` times one request's rate."""

CPU_ONLY_FACTOR = 0.1
"""A model all on the CPU decodes at a tenth of its speed all on the GPU."""

THINK_TOKENS_PER_REQUEST = 1500
"""Estimated thinking tokens per request of a type with ``think = true``."""

DEFAULT_TOKENS_PER_VERDICT = 300
"""Estimated output tokens of one verdict (four scores, issues, a recommendation, labels)."""

TOKENS_PER_SAMPLE: dict[str, float] = {
    "emotional_authenticity": 575,
    "dramatic_irony": 730,
    "personality_traits": 465,
    "tension_building": 360,
    "relationship_scoring": 400,
}
"""Estimated output tokens per generated item: the shipped few-shot examples' length
(``prompts/examples/``) at about 3.5 characters per token of Qwen3's tokenizer."""

FALLBACK_TOKENS_PER_SAMPLE = 500.0  # a data type missing from the table above

MIN_HISTORY_BATCHES = 10
MIN_HISTORY_BUSY_S = 600.0


@dataclass(frozen=True, slots=True)
class KnownModel:
    """An estimate of a model's weights and KV cache, for planning without the backend."""

    size_bytes: int
    kv_bytes_per_token: int


_QWEN3_30B_A3B = KnownModel(18_556_700_000, kv_bytes_per_token(48, 4, 128))
_QWEN3_8B = KnownModel(5_225_400_000, kv_bytes_per_token(36, 8, 128))

KNOWN_MODELS: dict[str, KnownModel] = {
    "qwen3:0.6b": KnownModel(522_700_000, kv_bytes_per_token(28, 8, 128)),
    "qwen3:1.7b": KnownModel(1_400_000_000, kv_bytes_per_token(28, 8, 128)),
    "qwen3:4b": KnownModel(2_500_000_000, kv_bytes_per_token(36, 8, 128)),
    "qwen3:8b": _QWEN3_8B,
    "qwen3:latest": _QWEN3_8B,
    "qwen3:14b": KnownModel(9_300_000_000, kv_bytes_per_token(40, 8, 128)),
    "qwen3:30b": _QWEN3_30B_A3B,
    "qwen3:30b-a3b": _QWEN3_30B_A3B,
    "qwen3:32b": KnownModel(20_201_300_000, kv_bytes_per_token(64, 8, 128)),
}
"""Qwen3 tags at the sizes Ollama's library lists (Q4_K_M weights) with an f16 KV cache of
their architecture (layers, KV heads, head dim 128): an estimate, labelled as one wherever it
is shown. ``gen-service doctor`` and ``models list`` read the real figures from the backend."""

KNOWN_MODELS_SOURCE = "estimate: Ollama's library size of the Qwen3 tag, f16 KV cache"


def known_model(name: str) -> KnownModel | None:
    """The table's estimate for a tag (``qwen3`` means ``qwen3:latest``), or None."""
    tag = name.strip().lower().removeprefix("registry.ollama.ai/").removeprefix("library/")
    if ":" not in tag:
        tag += ":latest"
    return KNOWN_MODELS.get(tag)


# -- the formulas ----------------------------------------------------------------------------


def offload_factor(gpu_share: float) -> float:
    """Share of its all-on-GPU speed a model keeps with ``gpu_share`` of it on the GPU."""
    share = min(1.0, max(0.0, gpu_share))
    return CPU_ONLY_FACTOR + (1.0 - CPU_ONLY_FACTOR) * share


def aggregate_tokens_per_s(tokens_per_s: float, gpu_share: float, slots: int) -> float:
    """``R = tokens_per_s x offload(gpu_share) x slots ** 0.6``."""
    return tokens_per_s * offload_factor(gpu_share) * math.pow(max(1, slots), SHARING_EXPONENT)


def estimated_tokens_per_sample(datatype: str, batch_size: int, think: bool) -> float:
    """The built-in estimate of output tokens per generated item, thinking included."""
    base = TOKENS_PER_SAMPLE.get(datatype, FALLBACK_TOKENS_PER_SAMPLE)
    return base + (THINK_TOKENS_PER_REQUEST / batch_size if think else 0.0)


def estimated_tokens_per_verdict(think: bool) -> float:
    return DEFAULT_TOKENS_PER_VERDICT + (THINK_TOKENS_PER_REQUEST if think else 0)


def judged_per_batch(accepted_per_batch: float, sample_rate: float) -> float:
    """Samples the judge scores of a batch: ``max(1, ceil(sample_rate x accepted))``, at most
    the accepted ones."""
    if accepted_per_batch <= 0:
        return 0.0
    wanted = max(1.0, float(math.ceil(sample_rate * accepted_per_batch - EPS)))
    return min(accepted_per_batch, wanted)


# -- models and types ------------------------------------------------------------------------


def residency(m: ModelInput, slots: int, inp: PlanInput) -> tuple[int | None, int, float | None]:
    """(size, KV cache, GPU share) of ``m`` with ``slots`` slots; share None: unknown / n/a."""
    known = known_model(m.name)
    per_token = known.kv_bytes_per_token if known else DEFAULT_KV_BYTES_PER_TOKEN
    kv = kv_cache_bytes(m.num_ctx, slots, bytes_per_token=per_token)
    size = known.size_bytes if known else None
    if inp.memory != "vram":
        return size, kv, None
    if m.cpu_only:
        return size, kv, 0.0
    if size is None or inp.budget_bytes is None:
        return size, kv, None
    return size, kv, estimate_residency(m.name, size, kv, inp.budget_bytes).gpu_share


def rate_at(m: ModelInput, slots: int, inp: PlanInput) -> float | None:
    """R of ``m`` run with ``slots`` parallel slots: measured (scaled from the configured slot
    count by the formula) or computed from tokens_per_s."""
    _, _, share = residency(m, slots, inp)
    if trusted(m.measured):
        assert m.measured is not None
        _, _, now_share = residency(m, inp.slots, inp)
        scale = math.pow(slots / inp.slots, SHARING_EXPONENT)
        if share is not None and now_share is not None:
            scale *= offload_factor(share) / offload_factor(now_share)
        return m.measured.tokens_per_s * scale
    if m.tokens_per_s is None:
        return None
    return aggregate_tokens_per_s(m.tokens_per_s, 1.0 if share is None else share, slots)


def trusted(measured: Measured | None) -> bool:
    return (
        measured is not None
        and measured.batches >= MIN_HISTORY_BATCHES
        and measured.busy_s >= MIN_HISTORY_BUSY_S
        and measured.eval_tokens > 0
    )


def model_plan(m: ModelInput, inp: PlanInput) -> ModelPlan:
    size, kv, share = residency(m, inp.slots, inp)
    fits = None
    if share is not None and size is not None and inp.budget_bytes is not None and not m.cpu_only:
        fits = size + kv <= inp.budget_bytes
    measured = trusted(m.measured)
    rate = rate_at(m, inp.slots, inp)
    source: Literal["history", "config"] | None = (
        "history" if measured else ("config" if m.tokens_per_s is not None else None)
    )
    return ModelPlan(
        role=m.role,
        name=m.name,
        size_bytes=size,
        kv_bytes=kv,
        gpu_share=share,
        fits=fits,
        tokens_per_s=m.tokens_per_s,
        aggregate_tokens_per_s=rate,
        speed_source=source,
        measured=m.measured if measured else None,
    )


def type_rate(t: TypeInput, model: ModelPlan) -> TypeRate:
    obs = t.observed
    if (
        obs is not None
        and obs.batches >= MIN_HISTORY_BATCHES
        and obs.accepted > 0
        and obs.eval_tokens > 0
    ):
        tpa = obs.eval_tokens / obs.accepted
        source: Literal["history", "estimate"] = "history"
        acceptance = obs.accepted / obs.requested if obs.requested else t.acceptance_rate
    else:
        tpa = t.tokens_per_sample / t.acceptance_rate
        source = "estimate"
        acceptance = t.acceptance_rate
    rate = model.aggregate_tokens_per_s
    return TypeRate(tpa, source, acceptance, None if rate is None else rate / tpa)
