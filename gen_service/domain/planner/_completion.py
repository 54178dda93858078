"""Step 5: the day each data type's total is reached, walking clock days or sequential
passes from now, and the completion status a type ends with."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from gen_service.domain.planner._context import Context, still_needed
from gen_service.domain.planner._inputs import TypeInput
from gen_service.domain.planner._limits import EPS, MAX_DAYS, MAX_PASSES
from gen_service.domain.planner._results import Completion, TypeRate
from gen_service.domain.planner._walk import day_segments, initial_resident, run_pass, simulate_day


def clock_completion(ctx: Context) -> dict[str, dt.date | Literal["beyond"]]:
    """The day each type's total is reached, walking days from ``now``."""
    inp = ctx.inp
    segments = day_segments(inp.phases)
    remaining = {name: float(still_needed(t)) for name, t in inp.types.items()}
    done: dict[str, dt.date | Literal["beyond"]] = {}
    resident = initial_resident(ctx, segments)
    now = inp.now
    start_minute = now.hour * 60 + now.minute + now.second / 60
    for offset in range(MAX_DAYS + 1):
        open_types = [d for d, left in remaining.items() if left > EPS]
        if not open_types:
            break
        quota: dict[str, float] = {}
        for name, t in inp.types.items():
            left = remaining[name]
            cap = t.daily_target - (t.accepted_today if offset == 0 else 0)
            quota[name] = min(left, max(0.0, float(cap))) if t.daily_target else left
        day = simulate_day(ctx, segments, quota, resident, start_minute if offset == 0 else 0)
        resident = day.resident
        date = now.date() + dt.timedelta(days=offset)
        for d, n in day.made.items():
            if remaining[d] > EPS:
                remaining[d] -= n
                if remaining[d] <= 1e-6:
                    remaining[d] = 0.0
                    done[d] = date
        if offset > 0 and not any(day.made.get(d, 0.0) > EPS for d in open_types):
            break  # nothing moves: the next days are the same
    else:
        for d, left in remaining.items():
            if left > EPS:
                done[d] = "beyond"
    return done


def sequential_completion(ctx: Context) -> dict[str, dt.date | Literal["beyond"]]:
    """The day each type's total is reached, pass after pass from ``now``."""
    inp = ctx.inp
    remaining = {name: float(still_needed(t)) for name, t in inp.types.items()}
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
        _, made, due = run_pass(ctx, quota, due, finished)
        if not any(n > EPS for n in made.values()):
            return done  # nothing moves: what is left is never made
    for d, left in remaining.items():
        if left > EPS and d not in done:
            done[d] = "beyond"
    return done


def completion_status(
    t: TypeInput, rate: TypeRate, date: dt.date | Literal["beyond"] | None
) -> tuple[Completion, dt.date | None]:
    if t.total_target == 0:
        return "no-more", None
    if still_needed(t) == 0:
        return "done", None
    if rate.samples_per_s is None:
        return "unknown", None
    if date == "beyond":
        return "beyond", None
    if date is None:
        return "never", None
    return "date", date
