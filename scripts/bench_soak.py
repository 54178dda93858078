"""Issue 11 (a week without a restart): a simulated week against the fake Ollama, watching
resident memory, open descriptors, the WAL and the database over time.

The service runs in this process in clock mode with the production config's day
(systemd/gen-service.toml: five generate phases, validation by the judge model, the process
phase with its reports and the near-duplicate sweep, backfill) and its daily targets, on a
:class:`ScaledClock` ``--speed`` times faster than real time; the fake Ollama runs in its own
process at time scale ``1 / speed``, so a simulated hour lasts the same on both sides. The
week starts at a Monday midnight UTC.

Every simulated hour a task on the service's event loop records this process's VmRSS, its
open descriptors (/proc/self/fd), the sizes of the database and of its ``-wal`` file and the
accepted samples. For ``--hold-hours`` from the start of day ``--hold-day``, a reader in
another process (python's sqlite3) holds a read transaction open, so no checkpoint can pass
its snapshot and the WAL grows; then it lets go, and the WAL must come back to a bounded
size.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import Process
from bench_common import (
    PRODUCTION_DAILY,
    PRODUCTION_TYPES,
    fake_ollama,
    load_text,
    open_fds,
    rss_mb,
    service_config,
)

from gen_service.adapters.store.core import WAL_SIZE_LIMIT
from gen_service.config import load_config
from gen_service.logs import configure_logging
from gen_service.service.clock import ScaledClock
from gen_service.service.supervisor import run_service

START = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)  # a Monday, midnight

# systemd/gen-service.toml's day, its validation and dedup settings.
SCHEDULE = """[validation]
model = "judge"
sample_rate = 0.10
temperature = 0.3
flag_below = 0.70
regenerate_flagged = true

[dedup]
threshold = 0.85

[schedule]
mode = "clock"
backfill = true
""" + "".join(
    f'\n[[schedule.phases]]\nname = "{name}"\nkind = "{kind}"\n'
    + (f'datatypes = ["{datatype}"]\n' if datatype else "")
    + f'start = "{start}"\nend = "{end}"\n'
    for name, kind, datatype, start, end in (
        ("emotional-authenticity", "generate", "emotional_authenticity", "00:00", "04:00"),
        ("dramatic-irony", "generate", "dramatic_irony", "04:00", "08:00"),
        ("personality-traits", "generate", "personality_traits", "08:00", "12:00"),
        ("tension-building", "generate", "tension_building", "12:00", "14:00"),
        ("relationship-scoring", "generate", "relationship_scoring", "14:00", "16:00"),
        ("validation", "validate", "", "16:00", "20:00"),
        ("processing", "process", "", "20:00", "24:00"),
    )
)

HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
count = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
print(count, flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
conn.close()
"""


@dataclass(frozen=True)
class Reading:
    at: dt.datetime  # simulated
    rss_mb: float
    fds: int
    wal_mb: float
    db_mb: float
    accepted: int
    note: str = ""


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except FileNotFoundError:
        return 0.0


class Watch:
    """Readings every simulated hour, and the reader that holds a read transaction."""

    def __init__(self, db: Path, clock: ScaledClock, hold_from: dt.datetime, hold_h: float):
        self.db = db
        self.clock = clock
        self.hold_from = hold_from
        self.hold_until = hold_from + dt.timedelta(hours=hold_h)
        self.readings: list[Reading] = []
        self.holder: Process | None = None

    def read(self, note: str = "") -> Reading:
        accepted = 0
        if self.db.exists():
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT COALESCE(SUM(accepted), 0) FROM daily_counts")
                accepted = int(row.fetchone()[0])
            except sqlite3.Error:
                pass
            conn.close()
        reading = Reading(
            self.clock.now(),
            rss_mb(),
            open_fds(),
            _size_mb(self.db.with_name(self.db.name + "-wal")),
            _size_mb(self.db),
            accepted,
            note,
        )
        self.readings.append(reading)
        return reading

    async def run(self, end: dt.datetime) -> None:
        moment = START
        while moment <= end:
            await anyio.sleep(self.clock.seconds_until(moment))
            note = ""
            if self.holder is None and self.hold_from <= moment < self.hold_until:
                self.holder = await anyio.open_process([sys.executable, "-c", HOLDER, str(self.db)])
                assert self.holder.stdout is not None
                seen = (await self.holder.stdout.receive()).decode().strip()
                note = f"reader holds a read transaction (sees {int(seen):,} samples)"
            elif self.holder is not None and moment >= self.hold_until:
                assert self.holder.stdin is not None
                await self.holder.stdin.send(b"\n")
                await self.holder.wait()
                self.holder = None
                note = "reader let go"
            self.read(note)
            moment += dt.timedelta(hours=1)


def bench_soak(days: float, speed: float, hold_day: int, hold_hours: float) -> None:
    end = START + dt.timedelta(days=days)
    hold_from = START + dt.timedelta(days=hold_day)
    print(
        f"{days:g} simulated days from {START:%Y-%m-%d %H:%M} UTC at {speed:g}x"
        f" (a day in {86400 / speed / 60:.1f} min), fake time scale 1/{speed:g}; reader holds"
        f" a read transaction for {hold_hours:g} h from day {hold_day}; {load_text()}"
    )
    with (
        fake_ollama({"time_scale": 1 / speed, "seed": 7}) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        targets = {name: 10**9 for name, *_ in PRODUCTION_TYPES}
        path = service_config(
            folder, fake.url, targets=targets, daily=PRODUCTION_DAILY, schedule=SCHEDULE
        )
        cfg = load_config(path)
        configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
        clock = ScaledClock(START, speed)
        watch = Watch(cfg.service.db, clock, hold_from, hold_hours)
        started = time.perf_counter()

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(run_service, cfg, clock=clock))
                await watch.run(end)
                tg.cancel_scope.cancel()

        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
        wall = time.perf_counter() - started
        final = watch.read("after the service stopped")
        reports = sorted(p.name for p in cfg.service.reports_path().glob("*"))
    _report(watch.readings, final, wall, hold_from, hold_hours, reports)


def _report(
    readings: list[Reading],
    final: Reading,
    wall: float,
    hold_from: dt.datetime,
    hold_hours: float,
    reports: list[str],
) -> None:
    hold_until = hold_from + dt.timedelta(hours=hold_hours)
    bound_mb = WAL_SIZE_LIMIT / 1e6 * 1.05
    back = next((r for r in readings if r.at > hold_until and r.wal_mb <= bound_mb), None)
    print(f"{'simulated':>16} {'RSS MB':>7} {'fds':>4} {'WAL MB':>7} {'DB MB':>7} {'accepted':>9}")
    for r in readings:
        # Every 6 h, and every hour from the hold until the WAL is back under its limit.
        draining = hold_from <= r.at <= (back.at if back is not None else hold_until)
        if r.at.hour % 6 == 0 or r.note or draining:
            print(
                f"{r.at:%a %d %H:%M}     {r.rss_mb:>7.1f} {r.fds:>4} {r.wal_mb:>7.1f}"
                f" {r.db_mb:>7.1f} {r.accepted:>9,} {r.note}"
            )
    running = [r for r in readings if r is not final]
    after_day1 = [r for r in running if r.at >= START + dt.timedelta(days=1)]
    base = after_day1[0]
    last = running[-1]
    before = [r for r in readings if r.at < hold_from]
    settled = [r for r in readings if back is not None and r.at >= back.at]
    back_in = (
        f"back under {bound_mb:.1f} MB (the store's journal_size_limit) within"
        f" {(back.at - hold_until).total_seconds() / 3600:.1f} simulated h"
        if back is not None
        else "never back under the limit"
    )
    # From the reader's start until the WAL is back under its limit (the reading taken just
    # after it let go included).
    held = [r for r in readings if hold_from <= r.at and (back is None or r.at < back.at)]
    print(
        f"RSS: {base.rss_mb:.1f} MB after day 1, {last.rss_mb:.1f} MB at the end"
        f" ({last.rss_mb - base.rss_mb:+.1f} MB), highest {max(r.rss_mb for r in after_day1):.1f}"
        " MB (target: growth < 50 MB)"
    )
    print(
        f"descriptors after day 1: min {min(r.fds for r in after_day1)}, max"
        f" {max(r.fds for r in after_day1)} (target: flat)"
    )
    print(
        f"WAL: at most {max((r.wal_mb for r in before), default=0):.1f} MB before the hold,"
        f" {max((r.wal_mb for r in held), default=0):.1f} MB at the peak, while the reader held"
        f" its transaction; {back_in} after it let go; at most"
        f" {max((r.wal_mb for r in settled), default=float('nan')):.1f} MB from then on,"
        f" {last.wal_mb:.1f} MB at the end (target: bounded after the reader lets go)"
    )
    print(
        f"database: {last.db_mb:.0f} MB, {last.accepted:,} accepted samples;"
        f" {len(reports)} report files; {wall / 60:.1f} min wall; {load_text()}"
    )
    print(f"after the service stopped: {final.fds} descriptors, WAL {final.wal_mb:.1f} MB")
