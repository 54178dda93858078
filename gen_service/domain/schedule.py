"""Clock-schedule math (pure): which phase holds at a local time, and when it ends.

Phases are ``HH:MM`` spans of the local day; ``end`` may be ``24:00``, and a phase whose end is
not after its start wraps past midnight. Validation (config.py) guarantees no two overlap.
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
    """The phase at local time ``now`` (tz-aware) and the wall-clock span it holds for.

    The span runs from the last phase boundary at or before ``now`` to the next one after it;
    boundaries are computed on the local calendar, so a DST change shortens or lengthens the
    phase it falls in, as a wall clock would."""
    minute_now = now.hour * 60 + now.minute
    boundaries = sorted({m % DAY_MINUTES for p in phases for m in p.minutes()})
    if not boundaries:
        raise ValueError("a clock schedule needs at least one phase")
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def at(day_offset: int, minute: int) -> dt.datetime:
        day = (midnight + dt.timedelta(days=day_offset)).date()
        naive = dt.datetime.combine(day, dt.time(minute // 60, minute % 60))
        return naive.replace(tzinfo=now.tzinfo)

    previous = [m for m in boundaries if m <= minute_now]
    start = at(0, previous[-1]) if previous else at(-1, boundaries[-1])
    following = [m for m in boundaries if m > minute_now]
    end = at(0, following[0]) if following else at(1, boundaries[0])
    return Slot(phase_at(phases, minute_now), start, end)
