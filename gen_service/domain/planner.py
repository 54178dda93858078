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
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

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
MAX_SLOTS = 16  # the largest num_parallel a fix suggests
MAX_DAYS = 3650  # completion dates further out are "not within ten years"
MAX_PASSES = 100_000
_EPS = 1e-9


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
    wanted = max(1.0, float(math.ceil(sample_rate * accepted_per_batch - _EPS)))
    return min(accepted_per_batch, wanted)


# -- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observed:
    """What the database holds about one data type written by one model."""

    batches: int
    requested: int
    accepted: int
    eval_tokens: int


@dataclass(frozen=True, slots=True)
class Measured:
    """One model's recorded work: tokens decoded and the seconds it had requests in flight."""

    batches: int
    eval_tokens: int
    busy_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.eval_tokens / self.busy_s if self.busy_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ModelInput:
    role: str
    name: str
    num_ctx: int = 8192
    tokens_per_s: float | None = None  # one request alone, all on the GPU
    cpu_only: bool = False  # num_gpu = 0
    measured: Measured | None = None


@dataclass(frozen=True, slots=True)
class TypeInput:
    name: str
    model: str  # the role
    batch_size: int
    daily_target: int
    total_target: int
    tokens_per_sample: float  # estimate, thinking included
    acceptance_rate: float  # estimate
    observed: Observed | None = None
    accepted: int = 0  # what the database already holds
    accepted_today: int = 0


@dataclass(frozen=True, slots=True)
class PhaseInput:
    name: str
    kind: Literal["generate", "validate", "process"]
    datatypes: tuple[str, ...] = ()
    start: int | None = None  # minutes after local midnight (clock mode)
    end: int | None = None  # may be 1440; not after start: wraps past midnight


@dataclass(frozen=True, slots=True)
class JudgeInput:
    model: str  # the role
    sample_rate: float
    tokens_per_verdict: float


Memory = Literal["vram", "server", "process"]
"""Where models live: the GPU (Ollama), a server's own business (openai), process RAM."""


@dataclass(frozen=True, slots=True)
class PlanInput:
    mode: Literal["clock", "sequential"]
    models: Mapping[str, ModelInput]
    types: Mapping[str, TypeInput]  # in config order
    phases: tuple[PhaseInput, ...]
    now: dt.datetime  # aware, in the service's time zone
    backfill: bool = True
    slots: int = 4
    budget_bytes: int | None = None  # VRAM the models may fill; None: unknown
    memory: Memory = "vram"
    judge: JudgeInput | None = None


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelPlan:
    role: str
    name: str
    size_bytes: int | None  # from KNOWN_MODELS; None: unknown tag
    kv_bytes: int | None
    gpu_share: float | None  # None: unknown or not applicable (then the rate assumes 1)
    fits: bool | None
    tokens_per_s: float | None  # configured, one request alone all on the GPU
    aggregate_tokens_per_s: float | None  # R; None: no speed known
    speed_source: Literal["history", "config"] | None
    measured: Measured | None  # the history behind a measured R


@dataclass(frozen=True, slots=True)
class TypeRate:
    tokens_per_accepted: float
    tokens_source: Literal["history", "estimate"]
    acceptance_rate: float
    samples_per_s: float | None  # v = R / T; None: the model's speed is unknown


@dataclass(frozen=True, slots=True)
class Fixes:
    """What would let an infeasible phase meet its types' daily targets (any one of them)."""

    hours: float  # the phase length that would do
    speedup: float  # how much faster the phase's work must go (hours / present hours)
    slots: int | None  # the smallest num_parallel that would do; None: none up to MAX_SLOTS
    best_slots: int  # the num_parallel with the highest rate up to MAX_SLOTS
    best_speedup: float  # and what it gives
    aggregate_tokens_per_s: dict[str, float]  # per model name: the rate that would do
    tokens_per_s: dict[str, float]  # per model name: one request alone, at today's GPU share
    tokens_per_accepted: dict[str, float]  # per data type: at most
    daily_target: dict[str, int]  # per data type: what the phase does reach


@dataclass(frozen=True, slots=True)
class PhaseRow:
    """One data type of a generate phase."""

    datatype: str
    daily_target: int
    made: float  # per day, in this phase's own time
    hours_needed: float | None  # the whole daily target in this phase alone


@dataclass(frozen=True, slots=True)
class JudgeLoad:
    needed: float  # samples to judge per day (sequential: per pass)
    capacity: float | None  # samples this phase can judge per day (clock); None: unknown
    hours_needed: float | None  # the judge time the needed samples take
    feasible: bool | None


@dataclass(frozen=True, slots=True)
class PhasePlan:
    name: str
    kind: Literal["generate", "validate", "process", "idle"]
    start: str | None  # "HH:MM" (clock)
    end: str | None
    hours: float  # clock: its span per day; sequential: its time in a nominal pass
    models: tuple[str, ...]  # model names it runs (generate: its types'; validate: the judge)
    rows: tuple[PhaseRow, ...] = ()
    feasible: bool | None = None
    shortfall: float = 0.0  # samples per day its types miss their daily targets by
    spare_hours: float = 0.0  # time its own types leave over (process and idle: all of it)
    backfill: dict[str, float] = field(default_factory=dict)  # samples per day in spare time
    idle_hours: float = 0.0  # spare time nothing fills
    fixes: Fixes | None = None
    judge: JudgeLoad | None = None


Completion = Literal["date", "done", "no-more", "never", "unknown", "beyond"]


@dataclass(frozen=True, slots=True)
class TypePlan:
    datatype: str
    model: str  # the model's name
    daily_target: int
    total_target: int
    accepted: int
    rate: TypeRate
    planned_per_day: float | None  # None: speed unknown
    feasible: bool | None  # planned_per_day meets daily_target; None: no daily target / unknown
    status: Completion
    completion: dt.date | None  # the day its total is reached (status "date")


@dataclass(frozen=True, slots=True)
class Plan:
    mode: Literal["clock", "sequential"]
    now: dt.datetime
    slots: int
    budget_bytes: int | None
    memory: Memory
    backfill: bool
    models: tuple[ModelPlan, ...]
    types: dict[str, TypePlan]
    phases: tuple[PhasePlan, ...]
    pass_hours: float | None  # sequential: a nominal pass over the phases
    completion: dt.date | None  # every total met (None: not all have a date)


# -- planning --------------------------------------------------------------------------------


def plan(inp: PlanInput) -> Plan:
    """Plan the schedule of ``inp``: rates, each phase's day (or pass), completion dates."""
    models = {role: _model_plan(m, inp) for role, m in inp.models.items()}
    rates = {name: _type_rate(t, models[t.model]) for name, t in inp.types.items()}
    ctx = _Context(inp, models, rates)
    if inp.mode == "clock":
        phases, per_day = _clock_phases(ctx)
        dates = _clock_completion(ctx)
        pass_hours = None
    else:
        phases, per_day, pass_hours = _sequential_phases(ctx)
        dates = _sequential_completion(ctx)
    types: dict[str, TypePlan] = {}
    for name, t in inp.types.items():
        rate = rates[name]
        planned = per_day.get(name, 0.0) if rate.samples_per_s is not None else None
        feasible: bool | None = None
        if planned is not None and t.daily_target > 0 and _remaining(t) > 0:
            feasible = planned + 1e-6 >= t.daily_target
        status, date = _status(t, rate, dates.get(name))
        types[name] = TypePlan(
            datatype=name,
            model=inp.models[t.model].name,
            daily_target=t.daily_target,
            total_target=t.total_target,
            accepted=t.accepted,
            rate=rate,
            planned_per_day=planned,
            feasible=feasible,
            status=status,
            completion=date,
        )
    wanted = [tp for tp in types.values() if tp.status not in ("done", "no-more")]
    completion = (
        max((tp.completion for tp in wanted if tp.completion), default=inp.now.date())
        if all(tp.status == "date" for tp in wanted)
        else None
    )
    return Plan(
        mode=inp.mode,
        now=inp.now,
        slots=inp.slots,
        budget_bytes=inp.budget_bytes,
        memory=inp.memory,
        backfill=inp.backfill,
        models=tuple(models.values()),
        types=types,
        phases=tuple(phases),
        pass_hours=pass_hours,
        completion=completion,
    )


def _remaining(t: TypeInput) -> int:
    return max(0, t.total_target - t.accepted)


def _status(
    t: TypeInput, rate: TypeRate, date: dt.date | Literal["beyond"] | None
) -> tuple[Completion, dt.date | None]:
    if t.total_target == 0:
        return "no-more", None
    if _remaining(t) == 0:
        return "done", None
    if rate.samples_per_s is None:
        return "unknown", None
    if date == "beyond":
        return "beyond", None
    if date is None:
        return "never", None
    return "date", date


# -- models and types ------------------------------------------------------------------------


def _residency(m: ModelInput, slots: int, inp: PlanInput) -> tuple[int | None, int, float | None]:
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


def _rate_at(m: ModelInput, slots: int, inp: PlanInput) -> float | None:
    """R of ``m`` run with ``slots`` parallel slots: measured (scaled from the configured slot
    count by the formula) or computed from tokens_per_s."""
    _, _, share = _residency(m, slots, inp)
    if _trusted(m.measured):
        assert m.measured is not None
        _, _, now_share = _residency(m, inp.slots, inp)
        scale = math.pow(slots / inp.slots, SHARING_EXPONENT)
        if share is not None and now_share is not None:
            scale *= offload_factor(share) / offload_factor(now_share)
        return m.measured.tokens_per_s * scale
    if m.tokens_per_s is None:
        return None
    return aggregate_tokens_per_s(m.tokens_per_s, 1.0 if share is None else share, slots)


def _trusted(measured: Measured | None) -> bool:
    return (
        measured is not None
        and measured.batches >= MIN_HISTORY_BATCHES
        and measured.busy_s >= MIN_HISTORY_BUSY_S
        and measured.eval_tokens > 0
    )


def _model_plan(m: ModelInput, inp: PlanInput) -> ModelPlan:
    size, kv, share = _residency(m, inp.slots, inp)
    fits = None
    if share is not None and size is not None and inp.budget_bytes is not None and not m.cpu_only:
        fits = size + kv <= inp.budget_bytes
    measured = _trusted(m.measured)
    rate = _rate_at(m, inp.slots, inp)
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


def _type_rate(t: TypeInput, model: ModelPlan) -> TypeRate:
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


@dataclass(frozen=True, slots=True)
class _Context:
    inp: PlanInput
    models: Mapping[str, ModelPlan]
    rates: Mapping[str, TypeRate]

    def speed(self, datatype: str) -> float | None:
        return self.rates[datatype].samples_per_s

    def model(self, datatype: str) -> str:
        return self.inp.types[datatype].model

    def generate_order(self) -> list[str]:
        seen: dict[str, None] = {}
        for phase in self.inp.phases:
            for d in phase.datatypes:
                seen.setdefault(d)
        return list(seen)

    def nominal_quota(self) -> dict[str, float]:
        """A day's (or pass's) quota of every type: its daily target, or with no daily cap
        what its total still needs; nothing once the total is met."""
        quota: dict[str, float] = {}
        for name, t in self.inp.types.items():
            left = _remaining(t)
            quota[name] = 0.0 if left == 0 else float(t.daily_target or left)
        return quota

    def judged(self, made: Mapping[str, float]) -> float:
        """Samples the judge must score for the production ``made``."""
        judge = self.inp.judge
        if judge is None:
            return 0.0
        total = 0.0
        for name, n in made.items():
            t = self.inp.types[name]
            per_batch = t.batch_size * self.rates[name].acceptance_rate
            if n > 0 and per_batch > 0:
                total += n / per_batch * judged_per_batch(per_batch, judge.sample_rate)
        return total

    def judge_rate(self) -> float | None:
        """Samples judged per second."""
        judge = self.inp.judge
        if judge is None:
            return None
        rate = self.models[judge.model].aggregate_tokens_per_s
        return None if rate is None else rate / judge.tokens_per_verdict


def _share_time(
    datatypes: Sequence[str], quota: dict[str, float], speed: Mapping[str, float], seconds: float
) -> tuple[dict[str, float], float]:
    """Water-filling: ``datatypes`` share ``seconds`` of their model equally; one that meets
    its quota early leaves the rest of its share to the others. Returns (made, seconds used)
    and lowers ``quota`` by what was made."""
    needs = sorted(datatypes, key=lambda d: quota[d] / speed[d])
    made: dict[str, float] = {}
    left = seconds
    for i, d in enumerate(needs):
        share = left / (len(needs) - i)
        need = quota[d] / speed[d]
        if need <= share:
            made[d] = quota[d]
            left -= need
        else:
            made[d] = share * speed[d]
            left -= share
        quota[d] = max(0.0, quota[d] - made[d])
    return made, seconds - left


# -- clock mode ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Segment:
    start: int  # minutes after midnight
    end: int
    phase: PhaseInput | None  # None: no phase holds


def _segments(phases: Iterable[PhaseInput]) -> list[_Segment]:
    """The day cut at every phase boundary, wrapped phases split at midnight, gaps filled."""
    pieces: list[_Segment] = []
    for p in phases:
        assert p.start is not None and p.end is not None
        if p.end > p.start:
            pieces.append(_Segment(p.start, p.end, p))
        else:
            pieces.append(_Segment(p.start, 1440, p))
            if p.end > 0:
                pieces.append(_Segment(0, p.end, p))
    pieces.sort(key=lambda s: s.start)
    day: list[_Segment] = []
    cursor = 0
    for s in pieces:
        if s.start > cursor:
            day.append(_Segment(cursor, s.start, None))
        day.append(s)
        cursor = s.end
    if cursor < 1440:
        day.append(_Segment(cursor, 1440, None))
    return day


@dataclass
class _Day:
    made: dict[str, float] = field(default_factory=dict)  # per type, the whole day
    own: dict[int, dict[str, float]] = field(default_factory=dict)  # per segment
    backfill: dict[int, dict[str, float]] = field(default_factory=dict)
    spare_s: dict[int, float] = field(default_factory=dict)
    idle_s: dict[int, float] = field(default_factory=dict)
    models: dict[int, frozenset[str]] = field(default_factory=dict)  # roles it ran
    resident: frozenset[str] = frozenset()  # at the end of the day


def _initial_resident(ctx: _Context, segments: Sequence[_Segment]) -> frozenset[str]:
    """The models resident at midnight: those of the day's last generate or validate phase."""
    for s in reversed(segments):
        if s.phase is None:
            continue
        if s.phase.kind == "generate":
            return frozenset(ctx.model(d) for d in s.phase.datatypes)
        if s.phase.kind == "validate" and ctx.inp.judge is not None:
            return frozenset({ctx.inp.judge.model})
    return frozenset()


def _simulate_day(
    ctx: _Context,
    segments: Sequence[_Segment],
    quota: dict[str, float],
    resident: frozenset[str],
    from_minute: float = 0.0,
) -> _Day:
    """One clock day from ``from_minute``: what each segment makes of ``quota`` (lowered)."""
    day = _Day()
    speed = {d: v for d in quota if (v := ctx.speed(d)) is not None}
    order = [d for d in ctx.generate_order() if d in speed]
    for i, seg in enumerate(segments):
        seconds = (seg.end - max(float(seg.start), from_minute)) * 60.0
        if seconds <= 0:
            continue
        phase = seg.phase
        spare = seconds
        if phase is not None and phase.kind == "validate":
            if ctx.inp.judge is not None:
                resident = frozenset({ctx.inp.judge.model})
            day.models[i] = resident
            continue  # the judge holds the GPU to the end of the phase: no backfill
        if phase is not None and phase.kind == "generate":
            todo = [d for d in phase.datatypes if d in speed and quota[d] > _EPS]
            if todo:
                resident = frozenset(ctx.model(d) for d in todo)
            elif not ctx.inp.backfill:
                resident = frozenset()
            made, used = _share_time(todo, quota, speed, seconds)
            day.own[i] = made
            spare = seconds - used
        elif not ctx.inp.backfill:
            resident = frozenset()
        day.models[i] = resident
        day.spare_s[i] = spare
        if ctx.inp.backfill and spare > _EPS:
            extra = [d for d in order if ctx.model(d) in resident and quota[d] > _EPS]
            made, used = _share_time(extra, quota, speed, spare)
            day.backfill[i] = {d: n for d, n in made.items() if n > 0}
            spare -= used
        day.idle_s[i] = spare
    for per_segment in (*day.own.values(), *day.backfill.values()):
        for d, n in per_segment.items():
            day.made[d] = day.made.get(d, 0.0) + n
    day.resident = resident
    return day


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _clock_phases(ctx: _Context) -> tuple[list[PhasePlan], dict[str, float]]:
    """Each phase's part of a nominal day: every type at its full daily quota."""
    inp = ctx.inp
    segments = _segments(inp.phases)
    quota = ctx.nominal_quota()
    day = _simulate_day(ctx, segments, dict(quota), _initial_resident(ctx, segments))
    judged = ctx.judged(day.made)
    judge_rate = ctx.judge_rate()
    judge_s = sum(
        (s.end - s.start) * 60.0
        for s in segments
        if s.phase is not None and s.phase.kind == "validate"
    )
    groups: list[tuple[PhaseInput | None, list[int]]] = [
        (p, [i for i, s in enumerate(segments) if s.phase is p]) for p in inp.phases
    ]
    groups += [(None, [i]) for i, s in enumerate(segments) if s.phase is None]
    plans: list[PhasePlan] = []
    for phase, idx in groups:
        seconds = sum((segments[i].end - segments[i].start) * 60.0 for i in idx)
        hours = seconds / 3600
        roles = {r for i in idx for r in day.models.get(i, frozenset())}
        names = tuple(sorted(inp.models[r].name for r in roles))
        backfill: dict[str, float] = {}
        for i in idx:
            for d, n in day.backfill.get(i, {}).items():
                backfill[d] = backfill.get(d, 0.0) + n
        spare = sum(day.spare_s.get(i, 0.0) for i in idx) / 3600
        idle = sum(day.idle_s.get(i, 0.0) for i in idx) / 3600
        if phase is None:
            seg = segments[idx[0]]
            plans.append(
                PhasePlan(
                    "(no phase)",
                    "idle",
                    _hhmm(seg.start),
                    _hhmm(seg.end),
                    hours,
                    names,
                    spare_hours=spare,
                    backfill=backfill,
                    idle_hours=idle,
                )
            )
            continue
        assert phase.start is not None and phase.end is not None
        start, end = _hhmm(phase.start), _hhmm(phase.end)
        if phase.kind == "validate":
            judge_names = (inp.models[inp.judge.model].name,) if inp.judge else ()
            if judge_rate is None:
                load = JudgeLoad(judged, None, None, None)
                plans.append(
                    PhasePlan(phase.name, "validate", start, end, hours, judge_names, judge=load)
                )
                continue
            needed_h = judged / judge_rate / 3600
            feasible = judge_rate * judge_s + 1e-6 >= judged
            # With several validate phases the need is shared in proportion to their hours.
            own_h = needed_h * seconds / judge_s
            load = JudgeLoad(judged, judge_rate * seconds, needed_h, feasible)
            plans.append(
                PhasePlan(
                    phase.name,
                    "validate",
                    start,
                    end,
                    hours,
                    judge_names,
                    feasible=feasible,
                    spare_hours=max(0.0, hours - own_h),
                    idle_hours=max(0.0, hours - own_h),
                    judge=load,
                )
            )
            continue
        if phase.kind == "process":
            plans.append(
                PhasePlan(
                    phase.name,
                    "process",
                    start,
                    end,
                    hours,
                    names,
                    spare_hours=spare,
                    backfill=backfill,
                    idle_hours=idle,
                )
            )
            continue
        rows, shortfall, fixes, feasible_gen = _generate_rows(ctx, phase, hours, idx, day, quota)
        plans.append(
            PhasePlan(
                phase.name,
                "generate",
                start,
                end,
                hours,
                names,
                rows=rows,
                feasible=feasible_gen,
                shortfall=shortfall,
                spare_hours=spare,
                backfill=backfill,
                idle_hours=idle,
                fixes=fixes,
            )
        )
    return plans, day.made


def _generate_rows(
    ctx: _Context,
    phase: PhaseInput,
    hours: float,
    idx: list[int],
    day: _Day,
    quota: Mapping[str, float],
) -> tuple[tuple[PhaseRow, ...], float, Fixes | None, bool | None]:
    """A generate phase's rows, its shortfall (samples per day), fixes and feasibility."""
    rows: list[PhaseRow] = []
    shortfall = shortfall_s = 0.0
    unknown = False
    for d in phase.datatypes:
        v = ctx.speed(d)
        made = sum(day.own.get(i, {}).get(d, 0.0) for i in idx)
        needed = None if v is None else quota[d] / v / 3600
        rows.append(PhaseRow(d, ctx.inp.types[d].daily_target, made, needed))
        if v is None:
            unknown = True
            continue
        if ctx.inp.types[d].daily_target == 0:
            continue  # no daily cap: it takes what time there is, and falls short of nothing
        short = quota[d] - day.made.get(d, 0.0)
        if short > 1e-6:
            shortfall += short
            shortfall_s += short / v
    if shortfall > 1e-6:
        fixes = _fixes(ctx, phase, hours, hours + shortfall_s / 3600, day) if hours else None
        return tuple(rows), shortfall, fixes, False
    return tuple(rows), 0.0, None, None if unknown else True


def _fixes(ctx: _Context, phase: PhaseInput, hours: float, needed: float, day: _Day) -> Fixes:
    inp = ctx.inp
    speedup = needed / hours
    roles = sorted({ctx.model(d) for d in phase.datatypes if ctx.speed(d) is not None})
    slots: int | None = None
    best_slots, best = inp.slots, 1.0
    for n in range(inp.slots + 1, MAX_SLOTS + 1):
        gains = []
        for role in roles:
            now_rate = _rate_at(inp.models[role], inp.slots, inp)
            new_rate = _rate_at(inp.models[role], n, inp)
            if now_rate and new_rate:
                gains.append(new_rate / now_rate)
        gain = min(gains, default=1.0)
        if gain > best:
            best_slots, best = n, gain
        if slots is None and gain + 1e-9 >= speedup:
            slots = n
    aggregate: dict[str, float] = {}
    alone: dict[str, float] = {}
    for role in roles:
        m = ctx.models[role]
        if m.aggregate_tokens_per_s is not None:
            aggregate[m.name] = m.aggregate_tokens_per_s * speedup
        if m.tokens_per_s is not None and m.speed_source == "config":
            alone[m.name] = m.tokens_per_s * speedup
    tokens = {
        d: ctx.rates[d].tokens_per_accepted / speedup
        for d in phase.datatypes
        if ctx.speed(d) is not None
    }
    reach = {d: round(day.made.get(d, 0.0)) for d in phase.datatypes}
    return Fixes(needed, speedup, slots, best_slots, best, aggregate, alone, tokens, reach)


def _clock_completion(ctx: _Context) -> dict[str, dt.date | Literal["beyond"]]:
    """The day each type's total is reached, walking days from ``now``."""
    inp = ctx.inp
    segments = _segments(inp.phases)
    remaining = {name: float(_remaining(t)) for name, t in inp.types.items()}
    done: dict[str, dt.date | Literal["beyond"]] = {}
    resident = _initial_resident(ctx, segments)
    now = inp.now
    start_minute = now.hour * 60 + now.minute + now.second / 60
    for offset in range(MAX_DAYS + 1):
        open_types = [d for d, left in remaining.items() if left > _EPS]
        if not open_types:
            break
        quota: dict[str, float] = {}
        for name, t in inp.types.items():
            left = remaining[name]
            cap = t.daily_target - (t.accepted_today if offset == 0 else 0)
            quota[name] = min(left, max(0.0, float(cap))) if t.daily_target else left
        day = _simulate_day(ctx, segments, quota, resident, start_minute if offset == 0 else 0)
        resident = day.resident
        date = now.date() + dt.timedelta(days=offset)
        for d, n in day.made.items():
            if remaining[d] > _EPS:
                remaining[d] -= n
                if remaining[d] <= 1e-6:
                    remaining[d] = 0.0
                    done[d] = date
        if offset > 0 and not any(day.made.get(d, 0.0) > _EPS for d in open_types):
            break  # nothing moves: the next days are the same
    else:
        for d, left in remaining.items():
            if left > _EPS:
                done[d] = "beyond"
    return done


# -- sequential mode -------------------------------------------------------------------------


def _run_pass(
    ctx: _Context,
    quota: dict[str, float],
    due: float,
    on_phase: Callable[[int, float, dict[str, float], float], None] | None = None,
) -> tuple[float, dict[str, float], float]:
    """One pass over the phases: each generate phase until its types meet ``quota``, each
    validate phase until the judge has scored what is due. Returns (seconds, made, due)."""
    seconds = 0.0
    made_all: dict[str, float] = {}
    judge_rate = ctx.judge_rate()
    for i, phase in enumerate(ctx.inp.phases):
        took = 0.0
        made: dict[str, float] = {}
        if phase.kind == "generate":
            for d in phase.datatypes:
                v = ctx.speed(d)
                if v is None or quota.get(d, 0.0) <= _EPS:
                    continue
                made[d] = quota[d]
                took += quota[d] / v
                quota[d] = 0.0
            due += ctx.judged(made)
        elif phase.kind == "validate" and judge_rate:
            took = due / judge_rate
            made = {}
        judged = due if phase.kind == "validate" and judge_rate else 0.0
        if phase.kind == "validate" and judge_rate:
            due = 0.0
        seconds += took
        for d, n in made.items():
            made_all[d] = made_all.get(d, 0.0) + n
        if on_phase is not None:
            on_phase(i, took, made, judged)
    return seconds, made_all, due


def _sequential_phases(
    ctx: _Context,
) -> tuple[list[PhasePlan], dict[str, float], float]:
    """A nominal pass: every type at its per-pass quota (the daily target)."""
    inp = ctx.inp
    took: dict[int, float] = {}
    made: dict[int, dict[str, float]] = {}
    judged: dict[int, float] = {}

    def record(i: int, seconds: float, pass_made: dict[str, float], scored: float) -> None:
        took[i], made[i], judged[i] = seconds, pass_made, scored

    quota = ctx.nominal_quota()
    _, per_pass, _ = _run_pass(ctx, quota, 0.0, record)
    # Whatever the first pass leaves due is judged in the next pass's validate phase: a
    # steady pass judges a whole pass's production.
    steady_due = ctx.judged(per_pass)
    judge_rate = ctx.judge_rate()
    plans: list[PhasePlan] = []
    total_s = 0.0
    for i, phase in enumerate(inp.phases):
        hours = took[i] / 3600
        if phase.kind == "validate":
            hours = steady_due / judge_rate / 3600 if judge_rate else 0.0
            name = (inp.models[inp.judge.model].name,) if inp.judge else ()
            load = JudgeLoad(steady_due, None, hours if judge_rate else None, None)
            plans.append(PhasePlan(phase.name, "validate", None, None, hours, name, judge=load))
        elif phase.kind == "process":
            plans.append(PhasePlan(phase.name, "process", None, None, 0.0, ()))
        else:
            rows = tuple(
                PhaseRow(
                    d,
                    inp.types[d].daily_target,
                    made[i].get(d, 0.0),
                    None if (v := ctx.speed(d)) is None else ctx.nominal_quota()[d] / v / 3600,
                )
                for d in phase.datatypes
            )
            names = tuple(sorted({inp.models[ctx.model(d)].name for d in phase.datatypes}))
            plans.append(PhasePlan(phase.name, "generate", None, None, hours, names, rows=rows))
        total_s += hours * 3600
    per_day = {d: (n * 86400 / total_s if total_s > 0 else 0.0) for d, n in per_pass.items()}
    for d in inp.types:
        per_day.setdefault(d, 0.0)
    return plans, per_day, total_s / 3600


def _sequential_completion(ctx: _Context) -> dict[str, dt.date | Literal["beyond"]]:
    """The day each type's total is reached, pass after pass from ``now``."""
    inp = ctx.inp
    remaining = {name: float(_remaining(t)) for name, t in inp.types.items()}
    done: dict[str, dt.date | Literal["beyond"]] = {}
    elapsed = 0.0
    due = 0.0

    def finished(i: int, seconds: float, made: dict[str, float], scored: float) -> None:
        nonlocal elapsed
        elapsed += seconds
        for d, n in made.items():
            remaining[d] -= n
            if remaining[d] <= 1e-6 and d not in done:
                remaining[d] = 0.0
                done[d] = (inp.now + dt.timedelta(seconds=elapsed)).date()

    for _ in range(MAX_PASSES):
        if elapsed > MAX_DAYS * 86400:
            break
        quota = {
            name: min(left, float(inp.types[name].daily_target or left))
            for name, left in remaining.items()
        }
        _, made, due = _run_pass(ctx, quota, due, finished)
        if not any(n > _EPS for n in made.values()):
            return done  # nothing moves: what is left is never made
    for d, left in remaining.items():
        if left > _EPS and d not in done:
            done[d] = "beyond"
    return done
