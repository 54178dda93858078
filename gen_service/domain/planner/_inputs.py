"""What the planner is given: the configured models, data types and phases, what the database
holds, the moment and the VRAM budget (gathered by :mod:`gen_service.service.plan_cmd`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


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
