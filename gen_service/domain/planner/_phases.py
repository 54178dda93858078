"""Each phase's part of a nominal clock day or sequential pass: its hours and models, what its
types make, spare, backfilled and idle time, and the judge's load."""

from __future__ import annotations

from gen_service.domain.planner._context import Context
from gen_service.domain.planner._inputs import PhaseInput
from gen_service.domain.planner._results import JudgeLoad, PhasePlan, PhaseRow
from gen_service.domain.planner._shortfall import generate_rows
from gen_service.domain.planner._walk import day_segments, initial_resident, run_pass, simulate_day


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# -- clock mode ------------------------------------------------------------------------------


def clock_phases(ctx: Context) -> tuple[list[PhasePlan], dict[str, float]]:
    """Each phase's part of a nominal day: every type at its full daily quota."""
    inp = ctx.inp
    segments = day_segments(inp.phases)
    quota = ctx.nominal_quota()
    day = simulate_day(ctx, segments, dict(quota), initial_resident(ctx, segments))
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
                    hhmm(seg.start),
                    hhmm(seg.end),
                    hours,
                    names,
                    spare_hours=spare,
                    backfill=backfill,
                    idle_hours=idle,
                )
            )
            continue
        assert phase.start is not None and phase.end is not None
        start, end = hhmm(phase.start), hhmm(phase.end)
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
        rows, shortfall, fixes, feasible_gen = generate_rows(ctx, phase, hours, idx, day, quota)
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


# -- sequential mode -------------------------------------------------------------------------


def sequential_phases(
    ctx: Context,
) -> tuple[list[PhasePlan], dict[str, float], float]:
    """A nominal pass: every type at its per-pass quota (the daily target)."""
    inp = ctx.inp
    took: dict[int, float] = {}
    made: dict[int, dict[str, float]] = {}
    judged: dict[int, float] = {}

    def record(i: int, seconds: float, pass_made: dict[str, float], scored: float) -> None:
        took[i], made[i], judged[i] = seconds, pass_made, scored

    quota = ctx.nominal_quota()
    _, per_pass, _ = run_pass(ctx, quota, 0.0, record)
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
