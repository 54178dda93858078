"""Clock-schedule math: phase_at and slot_at, property-tested over random schedules."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from gen_service.domain.schedule import phase_at, slot_at


@dataclass(frozen=True)
class P:
    name: str
    start: int
    end: int

    def minutes(self) -> tuple[int, int]:
        return self.start, self.end


MEMO = [
    P("ea", 0, 240),
    P("di", 240, 480),
    P("pt", 480, 720),
    P("tb", 720, 840),
    P("rs", 840, 960),
    P("val", 960, 1200),
    P("proc", 1200, 1440),
]


@st.composite
def schedules(draw: st.DrawFn) -> list[P]:
    cuts = sorted(draw(st.sets(st.integers(0, 1439), min_size=2, max_size=10)))
    phases = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        if draw(st.booleans()):
            phases.append(P(f"p{i}", a, b))
    if draw(st.booleans()):  # one phase that wraps past midnight
        phases.append(P("wrap", cuts[-1], cuts[0] if cuts[0] > 0 else 1440))
    return phases or [P("only", cuts[0], cuts[1])]


def test_memo_day() -> None:
    """The memo's day maps each hour to its phase; 24:00 closes the last one."""
    assert phase_at(MEMO, 0).name == "ea"  # type: ignore[union-attr]
    assert phase_at(MEMO, 239).name == "ea"  # type: ignore[union-attr]
    assert phase_at(MEMO, 240).name == "di"  # type: ignore[union-attr]
    assert phase_at(MEMO, 1439).name == "proc"  # type: ignore[union-attr]


@given(schedules(), st.integers(0, 1439))
def test_phase_at_returns_the_phase_covering_the_minute(phases: list[P], minute: int) -> None:
    """The phase returned covers the minute; None only when no phase does."""
    found = phase_at(phases, minute)
    covering = [
        p
        for p in phases
        if (
            (p.start <= minute < p.end)
            if p.end > p.start
            else (minute >= p.start or minute < p.end)
        )
    ]
    assert (found is None) == (not covering)
    if found is not None:
        assert found in covering


@given(schedules(), st.integers(0, 1439), st.integers(0, 59))
def test_slot_contains_now_and_is_constant_inside(
    phases: list[P], minute: int, second: int
) -> None:
    """now lies in [start, end), and the same phase holds at start and just before end."""
    tz = dt.UTC
    now = dt.datetime(2026, 3, 10, minute // 60, minute % 60, second, tzinfo=tz)
    slot = slot_at(phases, now)
    assert slot.start <= now < slot.end
    assert slot.end - slot.start <= dt.timedelta(days=1)
    last = slot.end - dt.timedelta(minutes=1)
    assert phase_at(phases, slot.start.hour * 60 + slot.start.minute) is slot.phase
    assert phase_at(phases, last.hour * 60 + last.minute) is slot.phase


def test_slot_across_midnight() -> None:
    """A phase from 22:00 to 02:00 seen at 23:30 ends at 02:00 the next day."""
    phases = [P("night", 1320, 120), P("day", 600, 900)]
    now = dt.datetime(2026, 5, 1, 23, 30, tzinfo=dt.UTC)
    slot = slot_at(phases, now)
    assert slot.phase is phases[0]
    assert slot.end == dt.datetime(2026, 5, 2, 2, 0, tzinfo=dt.UTC)
    assert slot.start == dt.datetime(2026, 5, 1, 22, 0, tzinfo=dt.UTC)


def test_idle_gap_has_no_phase() -> None:
    """Between phases the slot has no phase and ends at the next start."""
    phases = [P("day", 600, 900)]
    slot = slot_at(phases, dt.datetime(2026, 5, 1, 16, 0, tzinfo=dt.UTC))
    assert slot.phase is None
    assert slot.end == dt.datetime(2026, 5, 2, 10, 0, tzinfo=dt.UTC)


def test_local_zone_is_kept() -> None:
    """Bounds are wall-clock times in the schedule's zone."""
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    slot = slot_at(MEMO, dt.datetime(2026, 7, 1, 5, 0, tzinfo=berlin))
    assert slot.phase is MEMO[1]
    assert slot.start.hour == 4 and slot.end.hour == 8
    assert slot.start.tzinfo is berlin
