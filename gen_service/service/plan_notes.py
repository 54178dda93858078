"""The notes under ``gen-service plan``'s table: what it means, in sentences. Shortfalls with
their fixes, the judge's load, spare and idle time, VRAM fit, where each figure came from,
and when the totals are met."""

from __future__ import annotations

from typing import Any

from gen_service.config import Config
from gen_service.domain.planner import PhasePlan, Plan, offload_factor
from gen_service.domain.vram import gib
from gen_service.service.plan_format import count as _n
from gen_service.service.plan_format import hours as _h
from gen_service.service.plan_format import phase_span as _phase_span
from gen_service.service.plan_inputs import History


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
