"""In-memory progress, loaded from the store at start and advanced by the writer after each
commit; producers read it to know how much is still needed."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from gen_service.adapters.store import TypeCounts
from gen_service.config import Config
from gen_service.domain.records import CommitResult


@dataclass(slots=True)
class _Tally:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    accepted_today: int = 0
    accepted_cycle: int = 0
    flagged: int = 0
    batches_ok: int = 0
    batches_failed: int = 0


class ProgressBoard:
    """Counts per data type. ``today`` follows the configured time zone; a *cycle* is one pass
    over the sequential schedule, whose daily targets act as per-cycle quotas."""

    def __init__(self, cfg: Config, counts: Mapping[str, TypeCounts], day: str) -> None:
        self._cfg = cfg
        self.day = day
        self._tally: dict[str, _Tally] = defaultdict(_Tally)
        for name, c in counts.items():
            self._tally[name] = _Tally(c.accepted, c.rejected, c.duplicates, c.accepted_today)
        self._changed = anyio.Event()

    def reconfigure(self, cfg: Config) -> None:
        self._cfg = cfg
        self._notify()

    # -- reading -----------------------------------------------------------------------------

    def tally(self, datatype: str) -> _Tally:
        return self._tally[datatype]

    def total_remaining(self, datatype: str) -> int:
        target = self._cfg.datatypes[datatype].total_target
        return max(0, target - self._tally[datatype].accepted)

    def daily_remaining(self, datatype: str) -> int:
        """What is still needed today (a daily target of 0 means no daily cap)."""
        dtc = self._cfg.datatypes[datatype]
        total = self.total_remaining(datatype)
        if dtc.daily_target == 0:
            return total
        return min(total, max(0, dtc.daily_target - self._tally[datatype].accepted_today))

    def cycle_remaining(self, datatype: str) -> int:
        dtc = self._cfg.datatypes[datatype]
        total = self.total_remaining(datatype)
        if dtc.daily_target == 0:
            return total
        return min(total, max(0, dtc.daily_target - self._tally[datatype].accepted_cycle))

    def all_totals_met(self) -> bool:
        return all(self.total_remaining(d) == 0 for d in self._cfg.generate_datatypes())

    def counts(self) -> dict[str, _Tally]:
        return dict(self._tally)

    # -- writing (the writer task only) ------------------------------------------------------

    def record(self, datatype: str, day: str, result: CommitResult, ok: bool) -> None:
        t = self._tally[datatype]
        if day != self.day:
            self.roll_day(day)
        t.accepted += result.accepted
        t.rejected += result.rejected
        t.duplicates += result.duplicates
        t.accepted_today += result.accepted
        t.accepted_cycle += result.accepted
        if ok:
            t.batches_ok += 1
        else:
            t.batches_failed += 1
        self._notify()

    def unaccept(self, datatype: str, day: str, count: int) -> None:
        """Samples accepted earlier stopped counting (their batch was flagged)."""
        t = self._tally[datatype]
        t.accepted = max(0, t.accepted - count)
        if day == self.day:
            t.accepted_today = max(0, t.accepted_today - count)
        t.flagged += count
        self._notify()

    def resync(self, counts: Mapping[str, TypeCounts]) -> None:
        """Take the database's counts (another process, e.g. `gen-service validate` or a
        review, may have changed them); the cycle counts stay."""
        for name, c in counts.items():
            t = self._tally[name]
            t.accepted, t.rejected, t.duplicates = c.accepted, c.rejected, c.duplicates
            t.accepted_today = c.accepted_today
        self._notify()

    def roll_day(self, day: str) -> None:
        if day != self.day:
            self.day = day
            for t in self._tally.values():
                t.accepted_today = 0
            self._notify()

    def new_cycle(self) -> None:
        for t in self._tally.values():
            t.accepted_cycle = 0
        self._notify()

    # -- waiting -----------------------------------------------------------------------------

    async def wait_changed(self, max_wait_s: float = 1.0) -> None:
        """Return after the next change, or after ``max_wait_s`` seconds."""
        event = self._changed
        with anyio.move_on_after(max_wait_s):
            await event.wait()

    def poke(self) -> None:
        """Wake every waiter (something they wait on changed outside the counts)."""
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


def local_day(tz: dt.tzinfo, now: dt.datetime) -> str:
    """The calendar day of ``now`` in ``tz``, YYYY-MM-DD."""
    return now.astimezone(tz).date().isoformat()
