""":func:`plan`: the planner's entry point, which puts the steps together."""

from __future__ import annotations

from gen_service.domain.planner._completion import (
    clock_completion,
    completion_status,
    sequential_completion,
)
from gen_service.domain.planner._context import Context, still_needed
from gen_service.domain.planner._inputs import PlanInput
from gen_service.domain.planner._phases import clock_phases, sequential_phases
from gen_service.domain.planner._results import Plan, TypePlan
from gen_service.domain.planner._speed import model_plan, type_rate


def plan(inp: PlanInput) -> Plan:
    """Plan the schedule of ``inp``: rates, each phase's day (or pass), completion dates."""
    models = {role: model_plan(m, inp) for role, m in inp.models.items()}
    rates = {name: type_rate(t, models[t.model]) for name, t in inp.types.items()}
    ctx = Context(inp, models, rates)
    if inp.mode == "clock":
        phases, per_day = clock_phases(ctx)
        dates = clock_completion(ctx)
        pass_hours = None
    else:
        phases, per_day, pass_hours = sequential_phases(ctx)
        dates = sequential_completion(ctx)
    types: dict[str, TypePlan] = {}
    for name, t in inp.types.items():
        rate = rates[name]
        planned = per_day.get(name, 0.0) if rate.samples_per_s is not None else None
        feasible: bool | None = None
        if planned is not None and t.daily_target > 0 and still_needed(t) > 0:
            feasible = planned + 1e-6 >= t.daily_target
        status, date = completion_status(t, rate, dates.get(name))
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
