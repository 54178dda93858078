"""Wall-clock time for the schedule, behind a small interface so tests can run a day fast."""

from __future__ import annotations

import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, tz-aware (UTC)."""
        ...

    def seconds_until(self, moment: dt.datetime) -> float:
        """Real seconds to sleep until ``moment`` on this clock (≥ 0)."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def seconds_until(self, moment: dt.datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds())


class ScaledClock:
    """A clock that starts at ``start`` and runs ``speed`` times faster than real time
    (speed 60: a schedule minute passes in a real second)."""

    def __init__(self, start: dt.datetime, speed: float) -> None:
        # Kept in UTC: an aware datetime of a zone with daylight saving adds wall-clock time.
        self._start = start.astimezone(dt.UTC)
        self._speed = speed
        self._t0 = time.monotonic()

    def now(self) -> dt.datetime:
        return self._start + dt.timedelta(seconds=(time.monotonic() - self._t0) * self._speed)

    def seconds_until(self, moment: dt.datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self._speed)
