"""``gen-service plan --json``: the plan's figures and notes for machines."""

from __future__ import annotations

from typing import Any

from gen_service.config import Config
from gen_service.domain.planner import KNOWN_MODELS_SOURCE, Plan
from gen_service.domain.vram import gib
from gen_service.service.plan_format import date as _date
from gen_service.service.plan_inputs import History


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def to_json(result: Plan, cfg: Config, history: History, remarks: list[str]) -> dict[str, Any]:
    """The same figures for machines."""
    models = [
        {
            "role": m.role,
            "model": m.name,
            "size_gb": _r(None if m.size_bytes is None else gib(m.size_bytes)),
            "size_source": KNOWN_MODELS_SOURCE if m.size_bytes is not None else None,
            "kv_cache_gb": _r(None if m.kv_bytes is None else gib(m.kv_bytes)),
            "gpu_share": _r(m.gpu_share, 3),
            "fits_vram": m.fits,
            "tokens_per_s": m.tokens_per_s,
            "aggregate_tokens_per_s": _r(m.aggregate_tokens_per_s),
            "speed_source": m.speed_source,
            "measured": None
            if m.measured is None
            else {
                "batches": m.measured.batches,
                "eval_tokens": m.measured.eval_tokens,
                "busy_s": _r(m.measured.busy_s, 1),
            },
        }
        for m in result.models
    ]
    phases = []
    for p in result.phases:
        entry: dict[str, Any] = {
            "name": p.name,
            "kind": p.kind,
            "start": p.start,
            "end": p.end,
            "hours": _r(p.hours, 3),
            "models": list(p.models),
            "feasible": p.feasible,
            "shortfall_per_day": _r(p.shortfall, 1),
            "spare_hours": _r(p.spare_hours, 3),
            "backfill_per_day": {d: _r(n, 1) for d, n in p.backfill.items()},
            "idle_hours": _r(p.idle_hours, 3),
            "datatypes": [
                {
                    "datatype": r.datatype,
                    "daily_target": r.daily_target,
                    "made_in_phase": _r(r.made, 1),
                    "hours_needed": _r(r.hours_needed, 3),
                }
                for r in p.rows
            ],
            "judge": None
            if p.judge is None
            else {
                "needed": _r(p.judge.needed, 1),
                "capacity_per_day": _r(p.judge.capacity, 1),
                "hours_needed": _r(p.judge.hours_needed, 3),
                "feasible": p.judge.feasible,
            },
            "fixes": None,
        }
        if p.fixes is not None:
            f = p.fixes
            entry["fixes"] = {
                "hours": _r(f.hours, 3),
                "speedup": _r(f.speedup, 3),
                "num_parallel": f.slots,
                "best_num_parallel": f.best_slots,
                "best_speedup": _r(f.best_speedup, 3),
                "aggregate_tokens_per_s": {n: _r(v) for n, v in f.aggregate_tokens_per_s.items()},
                "tokens_per_s": {n: _r(v) for n, v in f.tokens_per_s.items()},
                "tokens_per_accepted": {d: _r(v, 1) for d, v in f.tokens_per_accepted.items()},
                "daily_target": f.daily_target,
            }
        phases.append(entry)
    types = {
        name: {
            "model": tp.model,
            "daily_target": tp.daily_target,
            "total_target": tp.total_target,
            "accepted": tp.accepted,
            "tokens_per_accepted": _r(tp.rate.tokens_per_accepted, 1),
            "tokens_source": tp.rate.tokens_source,
            "acceptance_rate": _r(tp.rate.acceptance_rate, 3),
            "samples_per_hour": _r(
                None if tp.rate.samples_per_s is None else tp.rate.samples_per_s * 3600, 1
            ),
            "planned_per_day": _r(tp.planned_per_day, 1),
            "feasible": tp.feasible,
            "status": tp.status,
            "completion": _date(tp.completion) if tp.completion else None,
        }
        for name, tp in result.types.items()
    }
    return {
        "config": str(cfg.source) if cfg.source else None,
        "database": str(history.db) if history.db else None,
        "now": result.now.isoformat(timespec="seconds"),
        "mode": result.mode,
        "backfill": result.backfill,
        "num_parallel": result.slots,
        "vram_budget_gb": _r(None if result.budget_bytes is None else gib(result.budget_bytes)),
        "memory": result.memory,
        "pass_hours": _r(result.pass_hours, 3),
        "completion": _date(result.completion) if result.completion else None,
        "infeasible": [p.name for p in result.phases if p.feasible is False],
        "models": models,
        "phases": phases,
        "datatypes": types,
        "notes": remarks,
    }
