"""Clock-schedule math (pure): which phase holds at a local time, and when it ends.

Phases are ``HH:MM`` spans of the local day; ``end`` may be ``24:00``, and a phase whose end is
not after its start wraps past midnight. Validation (config_rules.py) guarantees no two overlap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

DAY_MINUTES = 24 * 60


class ClockPhase(Protocol):
    @property
    def name(self) -> str: ...

    def minutes(self) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Slot:
    """The phase (or the idle gap, ``phase is None``) holding at a moment, with its bounds."""

    phase: ClockPhase | None
    start: dt.datetime
    end: dt.datetime


def _covers(span: tuple[int, int], minute: int) -> bool:
    start, end = span
    if end > start:
        return start <= minute < end
    return minute >= start or minute < end  # wraps past midnight


def phase_at(phases: Sequence[ClockPhase], minute: int) -> ClockPhase | None:
    """The phase holding at ``minute`` after local midnight (0..1439), or None."""
    minute %= DAY_MINUTES
    for phase in phases:
        if _covers(phase.minutes(), minute):
            return phase
    return None


def slot_at(phases: Sequence[ClockPhase], now: dt.datetime) -> Slot:
    """The phase at ``now`` (tz-aware, in the schedule's zone) and the span it holds for.

    Boundaries are the phases' ``HH:MM`` on the local calendar, turned into instants and
    ordered in absolute time, so daylight saving behaves as a wall clock does: the day it
    starts, the phase holding the skipped hour is an hour shorter (a boundary inside the gap
    falls after it); the day it ends, the phase holding the repeated hour is an hour longer,
    and the repeated hour never brings a finished phase back (a boundary in it counts once, at
    its first occurrence)."""
    minutes = sorted({m % DAY_MINUTES for p in phases for m in p.minutes()})
    if not minutes:
        raise ValueError("a clock schedule needs at least one phase")
    tz = now.tzinfo
    assert tz is not None, "slot_at needs an aware datetime"
    today = now.date()

    def at(day_offset: int, minute: int) -> dt.datetime:
        day = today + dt.timedelta(days=day_offset)
        naive = dt.datetime.combine(day, dt.time(minute // 60, minute % 60))
        return naive.replace(tzinfo=tz, fold=0)  # an ambiguous time: its first occurrence

    instants = sorted(
        {at(d, m).astimezone(dt.UTC): m for d in (-1, 0, 1, 2) for m in minutes}.items()
    )
    moment = now.astimezone(dt.UTC)
    index = max(i for i, (instant, _) in enumerate(instants) if instant <= moment)
    start, minute = instants[index]
    end = instants[index + 1][0]
    return Slot(phase_at(phases, minute), start.astimezone(tz), end.astimezone(tz))


def next_offset_change(
    tz: dt.tzinfo, now: dt.datetime, horizon: dt.timedelta = dt.timedelta(days=2)
) -> dt.datetime | None:
    """The first moment after ``now`` (UTC-aware) at which ``tz``'s UTC offset changes
    (daylight saving starts or ends), within ``horizon``; None when it does not. Found by
    stepping an hour at a time, then bisecting to the second."""

    def offset(moment: dt.datetime) -> dt.timedelta | None:
        return moment.astimezone(tz).utcoffset()

    start = offset(now)
    step = dt.timedelta(hours=1)
    low = now
    high = now + step
    while high - now <= horizon:
        if offset(high) != start:
            while high - low > dt.timedelta(seconds=1):
                middle = low + (high - low) / 2
                if offset(middle) == start:
                    low = middle
                else:
                    high = middle
            return high.replace(microsecond=0)
        low, high = high, high + step
    return None


def next_local_midnight(tz: dt.tzinfo, now: dt.datetime) -> dt.datetime:
    """The next local midnight after ``now`` in ``tz`` (as an aware datetime)."""
    local = now.astimezone(tz)
    tomorrow = local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0, 0)).replace(tzinfo=tz)
