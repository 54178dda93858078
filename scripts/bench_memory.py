"""SPEC §9.3: resident memory over a long run of 200,000 samples against the fake at time
scale 0 (nothing waits: the run is as fast as the service's own CPU allows).

The service runs in this process, the five production data types in sequential cycles (each
cycle a phase per type, with the swaps between them), until 200,000 accepted samples and the
warm-up are in. A thread reads this process's VmRSS and the database's accepted count every
``POLL_S`` seconds; the figure is the growth from the first reading past the warm-up to the
last one, and to the highest.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_common import (
    PRODUCTION_TYPES,
    fake_ollama,
    load_text,
    open_fds,
    rss_mb,
    run_until_done,
    service_config,
)

from gen_service.config import load_config
from gen_service.logs import configure_logging

POLL_S = 0.5
PER_CYCLE = 2000  # accepted samples per type per sequential cycle (its daily target)


@dataclass
class Sampler:
    """(seconds, accepted samples, RSS MB, open descriptors) every POLL_S seconds."""

    db: Path
    points: list[tuple[float, int, float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        started = time.perf_counter()
        conn: sqlite3.Connection | None = None
        while not self.stop.wait(POLL_S):
            if conn is None:
                if not self.db.exists():
                    continue
                conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT COALESCE(SUM(accepted), 0) FROM daily_counts").fetchone()
            except sqlite3.Error:
                continue  # the schema is not there yet
            self.points.append((time.perf_counter() - started, int(row[0]), rss_mb(), open_fds()))
        if conn is not None:
            conn.close()


def bench_memory(samples: int, warmup: int, every: int) -> None:
    total = samples + warmup
    per_type = -(-total // len(PRODUCTION_TYPES))
    cycle = min(PER_CYCLE, per_type)  # a daily target may not exceed the total
    print(
        f"{total:,} accepted samples ({warmup:,} warm-up), five types in sequential cycles of"
        f" {cycle:,} per type, fake at time scale 0; {load_text()}"
    )
    with (
        fake_ollama({"time_scale": 0.0, "remembered_items": 1000}) as fake,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        targets = dict.fromkeys((t[0] for t in PRODUCTION_TYPES), per_type)
        path = service_config(
            folder, fake.url, targets=targets, daily=dict.fromkeys(targets, cycle)
        )
        cfg = load_config(path)
        configure_logging("json", "warning", stream=open("/dev/null", "w"))  # noqa: SIM115
        sampler = Sampler(cfg.service.db)
        thread = threading.Thread(target=sampler.run, daemon=True)
        print(f"before the run: RSS {rss_mb():.1f} MB, {open_fds()} descriptors")
        thread.start()
        started = time.perf_counter()
        run_until_done(cfg)
        wall = time.perf_counter() - started
        sampler.stop.set()
        thread.join()
        db_mb = cfg.service.db.stat().st_size / 1e6
    points = sampler.points
    past = [p for p in points if p[1] >= warmup]
    if not past:
        raise SystemExit("the run ended before the warm-up")
    base = past[0]
    print(f"{'samples':>9} {'seconds':>8} {'RSS MB':>8} {'fds':>4}")
    mark = warmup
    for p in past:
        if p[1] >= mark:
            print(f"{p[1]:>9,} {p[0]:>8.1f} {p[2]:>8.1f} {p[3]:>4}")
            mark = (p[1] // every + 1) * every
    last = points[-1]
    print(f"{last[1]:>9,} {last[0]:>8.1f} {last[2]:>8.1f} {last[3]:>4}  (last reading)")
    highest = max(p[2] for p in past)
    print(
        f"RSS growth over {last[1] - base[1]:,} samples after the warm-up:"
        f" {last[2] - base[2]:+.1f} MB at the end, {highest - base[2]:+.1f} MB at the highest"
        f" (target < 50 MB); {wall:.0f} s wall ({last[1] / wall:,.0f} accepted/s),"
        f" database {db_mb:,.0f} MB; {load_text()}"
    )
