"""``gen-service plan``: what the schedule will produce, before the operator finds out on day 3.

It reads the config, the database's history when there is one (read-only: it works while the
service runs, and plans before the first run from the config's estimates), and the VRAM budget
(``[gpu] vram_gb``, else nvidia-smi); it never asks the backend. The arithmetic is
:mod:`gen_service.domain.planner`'s; this module gathers its inputs, prints a table per phase
and notes (or ``--json``), and returns 0 even when a phase cannot meet its targets: the plan is
a report, and says so.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from rich.console import Console, JustifyMethod
from rich.table import Table

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
    KNOWN_MODELS_SOURCE,
    MAX_DAYS,
    JudgeInput,
    Measured,
    Memory,
    ModelInput,
    Observed,
    PhaseInput,
    PhasePlan,
    Plan,
    PlanInput,
    TypeInput,
    estimated_tokens_per_sample,
    estimated_tokens_per_verdict,
    offload_factor,
    plan,
)
from gen_service.domain.vram import gib
from gen_service.errors import EXIT_OK

_MEMORY: dict[str, Memory] = {"ollama": "vram", "openai": "server", "llamacpp": "process"}


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
    if cfg.backend.kind != "ollama":
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
        judge = JudgeInput(v.model, v.sample_rate, _tokens_per_verdict(cfg))
    memory = _MEMORY[cfg.backend.kind]
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


def run_plan(
    cfg: Config,
    *,
    db: Path | None,
    now: dt.datetime | None,
    as_json: bool,
    console: Console,
) -> int:
    """Plan ``cfg`` and print it; 0 even when phases fall short (the output says so)."""
    tz = cfg.service.tzinfo()
    if now is None:
        now = dt.datetime.now(tz)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=tz)
    now = now.astimezone(tz)
    history = read_history(
        db or cfg.service.db, explicit=db is not None, today=now.date().isoformat()
    )
    budget = vram_budget_bytes(cfg)
    result = plan(plan_input(cfg, history, now, budget))
    remarks = notes(result, cfg, history)
    if as_json:
        print(json.dumps(to_json(result, cfg, history, remarks), indent=2))
    else:
        render(result, cfg, history, remarks, console)
    return EXIT_OK


# -- words -----------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _h(hours: float) -> str:
    return f"{hours:.1f} h"


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value else "-"


def _completion(plan_: Plan, datatype: str) -> str:
    tp = plan_.types[datatype]
    return {
        "date": _date(tp.completion),
        "done": "done",
        "no-more": "no more wanted",
        "never": "never",
        "unknown": "unknown",
        "beyond": f"> {MAX_DAYS // 365} years",
    }[tp.status]


def _phase_span(p: PhasePlan) -> str:
    return f"{p.start}–{p.end}" if p.start else "-"


def notes(result: Plan, cfg: Config, history: History) -> list[str]:
    """What the table means, in sentences: shortfalls with their fixes, spare and idle time,
    VRAM fit, where each figure came from, and when the totals are met."""
    out: list[str] = []
    models = {m.role: m for m in result.models}
    by_name = {m.name: m for m in result.models}
    for p in result.phases:
        if p.kind == "generate" and p.feasible is False:
            out.append(_shortfall_note(result, p, cfg, by_name))
    for p in result.phases:
        if p.kind == "validate" and p.judge is not None:
            out.append(_judge_note(p, cfg))
    for p in result.phases:
        spare = _spare_note(result, p)
        if spare:
            out.append(spare)
    idle = _idle_note(result)
    if idle:
        out.append(idle)
    if result.mode == "sequential" and result.pass_hours:
        per_day = 24 / result.pass_hours
        out.append(
            f"A pass over the phases takes {_h(result.pass_hours)}: each type's daily_target "
            f"(its per-pass quota) is met {per_day:.2f} times a day."
        )
    out.extend(_model_notes(result, cfg))
    unknown: dict[str, list[str]] = {}
    for name, tp in result.types.items():
        if tp.status == "unknown":
            unknown.setdefault(cfg.datatypes[name].model, []).append(name)
        elif tp.status == "never":
            out.append(
                f"{name}: never made at this schedule (no phase gives it time"
                + (", and backfill finds none" if result.backfill else "")
                + "); add it to a generate phase."
            )
    for role, names in unknown.items():
        out.append(
            f"{models[role].name} has no speed, so {', '.join(names)} cannot be planned: set "
            f"[models.{role}] tokens_per_s (tokens/s of one request alone), or run the service "
            "so the database measures it."
        )
    out.extend(_source_notes(result, history))
    if result.completion is not None:
        held = sum(tp.accepted for tp in result.types.values())
        out.append(
            f"Every total target is met by {result.completion.isoformat()} at the planned "
            f"rates, counting the {held:,} accepted samples the database holds"
            + (
                "; once a type's total is met, its phase's time backfills the resident "
                "model's other types, so the dates come sooner than total / plan/day."
                if result.backfill and result.mode == "clock"
                else "."
            )
        )
    else:
        out.append("Not every total target gets a date: see the rows without one.")
    out.append(
        "The plan is a report: exit 0 even when a phase falls short. Estimates (~) give way "
        "to measured figures once the database has history."
    )
    return out


def _shortfall_note(result: Plan, p: PhasePlan, cfg: Config, by_name: dict[str, Any]) -> str:
    assert p.fixes is not None
    f = p.fixes
    made = ", ".join(
        f"{r.datatype} {_n(result.types[r.datatype].planned_per_day or 0)} of {_n(r.daily_target)}"
        for r in p.rows
    )
    rates = ", ".join(
        f"{n} at {by_name[n].aggregate_tokens_per_s:.1f} tok/s"
        for n in p.models
        if by_name[n].aggregate_tokens_per_s is not None
    )
    span = f" ({_phase_span(p)}, {_h(p.hours)})" if p.start else ""
    fixes = [f"lengthen it to {_h(f.hours)} (+{_h(f.hours - p.hours)})"]
    if f.slots is not None:
        fixes.append(f"num_parallel = {f.slots} (and OLLAMA_NUM_PARALLEL)")
    elif f.best_slots > result.slots:
        fixes.append(
            f"not more parallel slots alone: at most ×{f.best_speedup:.2f} (num_parallel = "
            f"{f.best_slots}) of the ×{f.speedup:.2f} needed, since each slot's KV cache "
            "pushes more of the model to the CPU"
        )
    else:
        fixes.append(
            "not more parallel slots: each slot's KV cache pushes more of the model to the "
            "CPU, so more slots decode less"
        )
    for name, rate in f.tokens_per_s.items():
        fixes.append(
            f"a model decoding ≥ {rate:.0f} tok/s alone on the GPU (now "
            f"{by_name[name].tokens_per_s:g}; or ≥ {f.aggregate_tokens_per_s[name]:.0f} tok/s "
            "in all)"
        )
    for name, rate in f.aggregate_tokens_per_s.items():
        if name not in f.tokens_per_s:
            fixes.append(f"a model decoding ≥ {rate:.0f} tok/s in all (now measured)")
    for d, tokens in f.tokens_per_accepted.items():
        now_tokens = result.types[d].rate.tokens_per_accepted
        fixes.append(
            f"≤ {tokens:.0f} tokens per accepted {d} sample (now {now_tokens:.0f}: shorter "
            "fields via max_string_chars, think = false, fewer rejections)"
        )
    for d, reach in f.daily_target.items():
        fixes.append(f"[datatypes.{d}] daily_target = {reach:,}")
    return (
        f"✗ {p.name}{span} cannot meet its daily targets: {made} a day (short "
        f"{_n(p.shortfall)}); its work needs {_h(f.hours)} of {rates or 'its model'}. "
        "Fix, any one: " + "; ".join(fixes) + "."
    )


def _judge_note(p: PhasePlan, cfg: Config) -> str:
    load = p.judge
    assert load is not None
    rate = f"sample_rate {cfg.validation.sample_rate:.0%}, at least one per batch"
    span = f" ({_phase_span(p)}, {_h(p.hours)})" if p.start else ""
    if load.hours_needed is None:
        return (
            f"? {p.name}{span}: the judge must score {_n(load.needed)} samples a day ({rate}); "
            f"its speed is unknown: set [models.{cfg.validation.model}] tokens_per_s."
        )
    if load.capacity is None:  # sequential
        return (
            f"{p.name}: the judge scores {_n(load.needed)} samples a pass ({rate}) in "
            f"{_h(load.hours_needed)}."
        )
    if load.feasible:
        return (
            f"✓ {p.name}{span}: the judge scores the {_n(load.needed)} samples a day the "
            f"production asks for ({rate}) in {_h(load.hours_needed)}; it could score "
            f"{_n(load.capacity)}."
        )
    return (
        f"✗ {p.name}{span}: the judge must score {_n(load.needed)} samples a day ({rate}) "
        f"but manages {_n(load.capacity)}: it needs {_h(load.hours_needed)}. Fix, any one: "
        f"lengthen the phase to {_h(load.hours_needed)}; lower [validation] sample_rate; a "
        "faster judge model or fewer tokens per verdict; a backlog waits for the next day "
        "otherwise."
    )


def _spare_note(result: Plan, p: PhasePlan) -> str | None:
    span = f"{_phase_span(p)}, " if p.start else ""
    filled = ", ".join(f"{d} +{_n(n)}/day" for d, n in p.backfill.items() if n >= 0.5)
    on = " and ".join(p.models) if p.models else "no model"
    if p.kind in ("process", "idle"):
        head = (
            f"{p.name} ({span}{_h(p.hours)}): processing needs no GPU and runs beside generation"
            if p.kind == "process"
            else f"{p.start}–{p.end} has no phase ({_h(p.hours)})"
        )
        if filled:
            return f"{head}; backfill keeps {on} busy with {filled}" + (
                f", {_h(p.idle_hours)} idle." if p.idle_hours >= 0.05 else "."
            )
        if not result.backfill:
            return f"{head}; backfill is off, so the GPU is idle {_h(p.hours)}."
        return (
            f"{head}; the GPU is idle {_h(p.idle_hours)}: the resident model ({on}) has no "
            "data type under its daily target to backfill."
        )
    if p.kind != "generate" or p.spare_hours < 0.05:
        return None
    busy = p.hours - p.spare_hours
    head = f"{p.name} ({span}{_h(p.hours)}): its types meet their daily targets after {_h(busy)}"
    if not result.backfill:
        return f"{head}; backfill is off, so {on} idles {_h(p.spare_hours)}."
    if filled:
        tail = f", then {_h(p.idle_hours)} idle" if p.idle_hours >= 0.05 else ""
        return f"{head}; backfill gives the spare {_h(p.spare_hours)} to {filled}{tail}."
    return (
        f"{head}; {_h(p.spare_hours)} spare, idle: no other data type on {on} is under its "
        "daily target."
    )


def _idle_note(result: Plan) -> str | None:
    """Idle GPU hours beside phases that need more: the cheapest fix is often moving them."""
    if result.mode != "clock":
        return None
    idle = [
        (f"{p.start}–{p.end}" if p.kind == "idle" else p.name, p.idle_hours)
        for p in result.phases
        if p.idle_hours >= 0.05
    ]
    more = sum(
        p.fixes.hours - p.hours
        for p in result.phases
        if p.kind == "generate" and p.fixes is not None
    )
    if not idle or more <= 0:
        return None
    total = sum(h for _, h in idle)
    where = ", ".join(f"{name} {_h(h)}" for name, h in idle)
    share = "all" if total >= more else f"{total / more:.0%}"
    return (
        f"The GPU idles {_h(total)} a day ({where}) while the short phases need {_h(more)} "
        f"more: giving them those hours would cover {share} of it (the plan counts no model "
        "load time)."
    )


def _model_notes(result: Plan, cfg: Config) -> list[str]:
    out: list[str] = []
    if result.memory == "server":
        out.append(
            "VRAM is not estimated: the OpenAI-compatible servers manage their own memory; "
            "speeds are planned as configured or measured."
        )
        return out
    if result.memory == "process":
        out.append("The embedded backend runs in process RAM, one request at a time per model.")
        return out
    if result.budget_bytes is None:
        out.append(
            "VRAM fit unknown: [gpu] vram_gb is unset and nvidia-smi gave no answer; models "
            "are planned as if all on the GPU. Set vram_gb, or run `gen-service doctor`."
        )
    estimated = False
    for m in result.models:
        if m.size_bytes is None:
            out.append(
                f"{m.name}: VRAM fit unknown (not a Qwen3 tag the plan knows): run "
                "`gen-service doctor`; planned as if all on the GPU."
            )
            continue
        estimated = True
        if m.gpu_share is None or m.kv_bytes is None or result.budget_bytes is None:
            continue
        if m.gpu_share < 1:
            out.append(
                f"{m.name} does not fit in VRAM: ~{gib(m.size_bytes):.1f} GB of weights + "
                f"~{gib(m.kv_bytes):.1f} GB of KV cache (num_ctx {cfg.models[m.role].num_ctx} × "
                f"{result.slots} slots) against a {gib(result.budget_bytes):.1f} GB budget → "
                f"~{m.gpu_share:.0%} on the GPU, {offload_factor(m.gpu_share):.0%} of its speed."
            )
    if estimated:
        out.append(
            "Model sizes and KV caches are estimates (Ollama's library sizes of the Qwen3 "
            "tags, f16 KV cache); `gen-service doctor` shows the real fit."
        )
    return out


def _source_notes(result: Plan, history: History) -> list[str]:
    out: list[str] = []
    if history.db is None:
        out.append(
            "No database yet: tokens per sample, acceptance and speeds are the config's estimates."
        )
    measured = [
        f"{m.name} {m.aggregate_tokens_per_s:.1f} tok/s over {m.measured.batches:,} batches "
        f"({m.measured.busy_s / 3600:.1f} h of work)"
        for m in result.models
        if m.measured is not None and m.aggregate_tokens_per_s is not None
    ]
    if measured:
        out.append("Measured speeds (the database): " + "; ".join(measured) + ".")
    from_history = [d for d, tp in result.types.items() if tp.rate.tokens_source == "history"]
    if from_history:
        out.append("Tokens per accepted sample from the database for: " + ", ".join(from_history))
    return out


# -- table -----------------------------------------------------------------------------------


def _ok(feasible: bool | None, short: float = 0.0) -> str:
    if feasible is None:
        return "?"
    if feasible:
        return "✓"
    return f"✗ −{_n(short)}" if short else "✗"


def render(
    result: Plan, cfg: Config, history: History, remarks: list[str], console: Console
) -> None:
    """The per-phase table, the models, then the notes."""
    sequential = result.mode == "sequential"
    title = (
        f"gen-service plan — {cfg.source or 'config'}; {result.mode} schedule; "
        f"now {result.now.isoformat(timespec='minutes')}"
    )
    table = Table(title=title, title_justify="left", caption_justify="left")
    table.caption = "~ estimate (config or built in); plain: measured in the database"
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("phase", "left"),
        *((("time", "left"),) if not sequential else ()),
        ("hours" if not sequential else "h/pass", "right"),
        ("data type", "left"),
        ("model", "left"),
        ("tok/s", "right"),
        ("tok/sample", "right"),
        ("target/day" if not sequential else "per pass", "right"),
        ("plan/day", "right"),
        ("needs", "right"),
        ("ok", "left"),
        ("have/total", "right"),
        ("done by", "left"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=col in ("phase", "data type"))
    by_name = {m.name: m for m in result.models}
    for p in result.phases:
        unknown = any(r.hours_needed is None for r in p.rows)
        hours = "?" if unknown else f"{p.hours:.1f}"
        first = [p.name, *([_phase_span(p)] if not sequential else []), hours]
        if p.kind == "generate":
            for i, r in enumerate(p.rows):
                tp = result.types[r.datatype]
                model = by_name[tp.model]
                rate = model.aggregate_tokens_per_s
                short = max(0.0, r.daily_target - (tp.planned_per_day or 0))
                table.add_row(
                    *(first if i == 0 else [""] * len(first)),
                    r.datatype,
                    tp.model,
                    "?" if rate is None else _tilde(model.speed_source != "history", rate, 1),
                    _tilde(tp.rate.tokens_source != "history", tp.rate.tokens_per_accepted, 0),
                    _n(r.daily_target) if r.daily_target else "no cap",
                    "?" if tp.planned_per_day is None else _n(tp.planned_per_day),
                    "?" if r.hours_needed is None else _h(r.hours_needed),
                    "-" if r.daily_target == 0 else _ok(tp.feasible, short),
                    f"{tp.accepted:,}/{tp.total_target:,}",
                    _completion(result, r.datatype),
                )
        elif p.kind == "validate" and p.judge is not None:
            judge = by_name.get(p.models[0]) if p.models else None
            rate = judge.aggregate_tokens_per_s if judge else None
            load = p.judge
            table.add_row(
                *first,
                f"judge ({cfg.validation.sample_rate:.0%} of each batch)",
                p.models[0] if p.models else "-",
                "?"
                if rate is None or judge is None
                else _tilde(judge.speed_source != "history", rate, 1),
                f"~{_tokens_per_verdict(cfg):.0f}",
                _n(load.needed),
                "-" if load.capacity is None else _n(load.capacity),
                "?" if load.hours_needed is None else _h(load.hours_needed),
                _ok(load.feasible, max(0.0, load.needed - (load.capacity or 0))),
                "",
                "",
            )
        else:
            what = "no GPU; beside generation" if p.kind == "process" else "no phase"
            filled = ", ".join(f"{d} +{_n(n)}" for d, n in p.backfill.items() if n >= 0.5)
            table.add_row(*first, what + (f"; backfill {filled}" if filled else ""), *[""] * 9)
    console.print(table)
    console.print(_models_table(result, cfg))
    console.print("Notes:")
    for remark in remarks:
        console.print(f"- {remark}", markup=False, highlight=False, soft_wrap=True)


def _tokens_per_verdict(cfg: Config) -> float:
    v = cfg.validation
    return v.tokens_per_verdict or estimated_tokens_per_verdict(v.think)


def _tilde(estimate: bool, value: float, digits: int) -> str:
    return f"{'~' if estimate else ''}{value:,.{digits}f}"


def _models_table(result: Plan, cfg: Config) -> Table:
    table = Table(title="models", title_justify="left")
    for col in ("role", "model", "size GB", "KV GB", "GPU share", "tok/s alone", "tok/s in all"):
        table.add_column(col, justify="left" if col in ("role", "model") else "right")
    for m in result.models:
        share = "?" if m.gpu_share is None else f"~{m.gpu_share:.0%}"
        if result.memory != "vram":
            share = "n/a"
        table.add_row(
            m.role,
            m.name,
            "?" if m.size_bytes is None else f"~{gib(m.size_bytes):.1f}",
            "?" if m.kv_bytes is None else f"~{gib(m.kv_bytes):.1f}",
            share,
            "-" if m.tokens_per_s is None else f"{m.tokens_per_s:g}",
            "?"
            if m.aggregate_tokens_per_s is None
            else _tilde(m.speed_source != "history", m.aggregate_tokens_per_s, 1),
        )
    return table


# -- JSON ------------------------------------------------------------------------------------


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
