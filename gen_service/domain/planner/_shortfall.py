"""A generate phase whose types fall short of their daily targets: by how much, and what
would fix it (a longer phase, more slots, a faster model, fewer tokens, lower targets)."""

from __future__ import annotations

from collections.abc import Mapping

from gen_service.domain.planner._context import Context
from gen_service.domain.planner._inputs import PhaseInput
from gen_service.domain.planner._limits import MAX_SLOTS
from gen_service.domain.planner._results import Fixes, PhaseRow
from gen_service.domain.planner._speed import rate_at
from gen_service.domain.planner._walk import Day


def generate_rows(
    ctx: Context,
    phase: PhaseInput,
    hours: float,
    idx: list[int],
    day: Day,
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
        fixes = fixes_for(ctx, phase, hours, hours + shortfall_s / 3600, day) if hours else None
        return tuple(rows), shortfall, fixes, False
    return tuple(rows), 0.0, None, None if unknown else True


def fixes_for(ctx: Context, phase: PhaseInput, hours: float, needed: float, day: Day) -> Fixes:
    inp = ctx.inp
    speedup = needed / hours
    roles = sorted({ctx.model(d) for d in phase.datatypes if ctx.speed(d) is not None})
    slots: int | None = None
    best_slots, best = inp.slots, 1.0
    for n in range(inp.slots + 1, MAX_SLOTS + 1):
        gains = []
        for role in roles:
            now_rate = rate_at(inp.models[role], inp.slots, inp)
            new_rate = rate_at(inp.models[role], n, inp)
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
