"""What the planner returns: a :class:`Plan` of its models, data types and phases."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from gen_service.domain.planner._inputs import Measured, Memory


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
