"""Capacity planning for ``gen-service plan`` (SPEC §6): what a schedule will produce. Pure.

The arithmetic, in the order it is done (README "Planning" says the same):

1. **A model's aggregate decode rate** ``R`` (tokens/s, all its parallel slots together)::

       R = tokens_per_s x offload(g) x slots ** 0.6        offload(g) = 0.1 + 0.9 x g

   ``tokens_per_s`` is one request alone with the model all on the GPU (``[models.X]``);
   ``slots ** 0.6`` is what ``num_parallel`` requests decoding at once add (batching helps,
   sub-linearly); ``g`` is the model's share on the GPU, ``min(1, budget / (size + KV cache))``
   from :func:`~gen_service.domain.vram.estimate_residency`, and a model partly on the CPU is
   slower in proportion: a tenth of its speed all on the CPU. The fake Ollama simulates the
   same model of a GPU (``fake_ollama._decode``), so a plan and a dry run agree. Sizes come
   from :data:`KNOWN_MODELS`, an estimate for Qwen3 tags; for any other tag the share is
   unknown and taken as 1 (``gen-service doctor`` reads the real size). Once the database
   holds enough history (:data:`MIN_HISTORY_BATCHES` batches and :data:`MIN_HISTORY_BUSY_S`
   seconds of work), ``R`` is the measured rate instead: tokens decoded / seconds the model
   had requests in flight, which already holds slots, offload and every overhead.
2. **Tokens per accepted sample** ``T`` of a data type: from history ``eval_tokens /
   accepted`` of its model (failed and rejected work included), else the estimate
   ``tokens_per_sample / acceptance_rate``, where ``tokens_per_sample`` defaults to
   :data:`TOKENS_PER_SAMPLE` plus :data:`THINK_TOKENS_PER_REQUEST` ``/ batch_size`` when the
   type thinks.
3. **Samples per second** of a type while its model runs: ``v = R / T``. Its daily target
   needs ``daily_target / v`` seconds of the model.
4. **A clock day** is walked phase by phase from midnight, with each type's quota (its daily
   target; no cap: what is left of its total). In a generate phase of ``S`` seconds the
   phase's types share the model's time equally (they share its slots); one that meets its
   quota leaves its share to the others (water-filling). Time left over goes, with
   ``schedule.backfill``, to the under-quota types of the resident model, as the service
   does; process phases and hours without a phase keep the resident model and backfill too.
   A validate phase judges ``S x R_judge / tokens_per_verdict`` samples a day against what
   the day's production asks for: per batch ``max(1, ceil(sample_rate x accepted))``.
5. **Completion**: the same walk from ``now`` (today's quota less what today already holds),
   day after day, each type's quota capped by what its total still needs, until every total
   is met; sequential schedules run pass after pass instead, each phase for as long as its
   quota takes.

Prompt evaluation and model loads are not counted (they are small beside decoding); measured
history includes them.

Where each step lives: :mod:`._speed` (steps 1 to 3, the speed and VRAM model),
:mod:`._walk` (step 4: a clock day, a sequential pass), :mod:`._phases` (each phase's part of
a day or pass), :mod:`._shortfall` (a short phase and its fixes), :mod:`._completion` (step 5),
:mod:`._plan` (:func:`plan`, all of them together); their data in :mod:`._inputs` and
:mod:`._results`. This module is the public face: import from here.
"""

from __future__ import annotations

from gen_service.domain.planner._inputs import (
    JudgeInput,
    Measured,
    Memory,
    ModelInput,
    Observed,
    PhaseInput,
    PlanInput,
    TypeInput,
)
from gen_service.domain.planner._limits import MAX_DAYS, MAX_PASSES, MAX_SLOTS
from gen_service.domain.planner._plan import plan
from gen_service.domain.planner._results import (
    Completion,
    Fixes,
    JudgeLoad,
    ModelPlan,
    PhasePlan,
    PhaseRow,
    Plan,
    TypePlan,
    TypeRate,
)
from gen_service.domain.planner._speed import (
    CPU_ONLY_FACTOR,
    DEFAULT_TOKENS_PER_VERDICT,
    FALLBACK_TOKENS_PER_SAMPLE,
    KNOWN_MODELS,
    KNOWN_MODELS_SOURCE,
    MIN_HISTORY_BATCHES,
    MIN_HISTORY_BUSY_S,
    SHARING_EXPONENT,
    THINK_TOKENS_PER_REQUEST,
    TOKENS_PER_SAMPLE,
    KnownModel,
    aggregate_tokens_per_s,
    estimated_tokens_per_sample,
    estimated_tokens_per_verdict,
    judged_per_batch,
    known_model,
    offload_factor,
)

# The day cut into segments, for tests/domain/test_planner.py.
from gen_service.domain.planner._walk import day_segments as _segments  # noqa: F401

__all__ = [
    "CPU_ONLY_FACTOR",
    "DEFAULT_TOKENS_PER_VERDICT",
    "FALLBACK_TOKENS_PER_SAMPLE",
    "KNOWN_MODELS",
    "KNOWN_MODELS_SOURCE",
    "MAX_DAYS",
    "MAX_PASSES",
    "MAX_SLOTS",
    "MIN_HISTORY_BATCHES",
    "MIN_HISTORY_BUSY_S",
    "SHARING_EXPONENT",
    "THINK_TOKENS_PER_REQUEST",
    "TOKENS_PER_SAMPLE",
    "Completion",
    "Fixes",
    "JudgeInput",
    "JudgeLoad",
    "KnownModel",
    "Measured",
    "Memory",
    "ModelInput",
    "ModelPlan",
    "Observed",
    "PhaseInput",
    "PhasePlan",
    "PhaseRow",
    "Plan",
    "PlanInput",
    "TypeInput",
    "TypePlan",
    "TypeRate",
    "aggregate_tokens_per_s",
    "estimated_tokens_per_sample",
    "estimated_tokens_per_verdict",
    "judged_per_batch",
    "known_model",
    "offload_factor",
    "plan",
]
