"""What ``gen-service plan`` plans from: the config, the database's history (read-only, so
it works while the service runs; none before the first run) and the VRAM budget, turned into
the planner's :class:`~gen_service.domain.planner.PlanInput`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gen_service.adapters.backend import ModelMemory
from gen_service.adapters.factory import capabilities_for
from gen_service.adapters.store import open_readonly
from gen_service.adapters.store.history import (
    Holdings,
    ModelHistory,
    TypeHistory,
    holdings,
    model_history,
    type_history,
)
from gen_service.config import Config, ModelConfig
from gen_service.domain.planner import (
    JudgeInput,
    Measured,
    Memory,
    ModelInput,
    Observed,
    PhaseInput,
    PlanInput,
    TypeInput,
    estimated_tokens_per_sample,
    estimated_tokens_per_verdict,
)

_MEMORY: dict[ModelMemory, Memory] = {
    ModelMemory.GPU_BUDGET: "vram",
    ModelMemory.SERVER: "server",
    ModelMemory.PROCESS_RAM: "process",
}


class History:
    """What the database holds, or nothing (no database yet)."""

    def __init__(
        self,
        db: Path | None,
        types: dict[tuple[str, str], TypeHistory] | None = None,
        models: dict[str, ModelHistory] | None = None,
        held: dict[str, Holdings] | None = None,
    ) -> None:
        self.db = db
        self.types = types or {}
        self.models = models or {}
        self.held = held or {}


def read_history(db: Path, *, explicit: bool, today: str) -> History:
    """The database's history; a missing database is no history unless it was named with
    ``--db`` (then it is an error, exit 74, like any unreadable one)."""
    if not explicit and not db.exists():
        return History(None)
    conn = open_readonly(db)
    try:
        return History(db, type_history(conn), model_history(conn), holdings(conn, today))
    finally:
        conn.close()


def vram_budget_bytes(cfg: Config) -> int | None:
    """``[gpu] vram_gb`` (else nvidia-smi's figure) less ``reserve_gb``; None: unknown."""
    if capabilities_for(cfg).memory is not ModelMemory.GPU_BUDGET:
        return None
    total = cfg.gpu.vram_gb
    if total is None:
        from gen_service.service.doctor import gpu_vram_gb

        total = gpu_vram_gb()
    if total is None:
        return None
    return max(0, int((total - cfg.gpu.reserve_gb) * 2**30))


def plan_input(cfg: Config, history: History, now: dt.datetime, budget: int | None) -> PlanInput:
    """The planner's inputs from the config, the history and the budget."""
    used = {dtc.model for dtc in cfg.datatypes.values()}
    validates = any(p.kind == "validate" for p in cfg.schedule.phases)
    if validates:
        used.add(cfg.validation.model)
    models = {
        role: _model_input(role, m, history) for role, m in cfg.models.items() if role in used
    }
    types: dict[str, TypeInput] = {}
    for name, dtc in cfg.datatypes.items():
        model = cfg.models[dtc.model]
        held = history.held.get(name, Holdings(0, 0))
        seen = history.types.get((name, model.name))
        types[name] = TypeInput(
            name=name,
            model=dtc.model,
            batch_size=dtc.batch_size,
            daily_target=dtc.daily_target,
            total_target=dtc.total_target,
            tokens_per_sample=dtc.tokens_per_sample
            or estimated_tokens_per_sample(name, dtc.batch_size, dtc.think),
            acceptance_rate=dtc.acceptance_rate,
            observed=None
            if seen is None
            else Observed(seen.batches, seen.requested, seen.accepted, seen.eval_tokens),
            accepted=held.accepted,
            accepted_today=held.accepted_today,
        )
    phases = []
    for p in cfg.schedule.phases:
        start = end = None
        if cfg.schedule.mode == "clock":
            start, end = p.minutes()
        phases.append(PhaseInput(p.name, p.kind, p.datatypes, start, end))
    judge = None
    if validates:
        v = cfg.validation
        judge = JudgeInput(v.model, v.sample_rate, tokens_per_verdict(cfg))
    memory = _MEMORY[capabilities_for(cfg).memory]
    return PlanInput(
        mode=cfg.schedule.mode,
        models=models,
        types=types,
        phases=tuple(phases),
        now=now,
        backfill=cfg.schedule.backfill,
        # The embedded backend runs one request at a time per model.
        slots=1 if memory == "process" else cfg.backend.num_parallel,
        budget_bytes=budget,
        memory=memory,
        judge=judge,
    )


def _model_input(role: str, m: ModelConfig, history: History) -> ModelInput:
    seen = history.models.get(m.name)
    return ModelInput(
        role=role,
        name=m.name,
        num_ctx=m.num_ctx,
        tokens_per_s=m.tokens_per_s,
        cpu_only=m.num_gpu == 0,
        measured=None if seen is None else Measured(seen.batches, seen.eval_tokens, seen.busy_s),
    )


def tokens_per_verdict(cfg: Config) -> float:
    v = cfg.validation
    return v.tokens_per_verdict or estimated_tokens_per_verdict(v.think)
