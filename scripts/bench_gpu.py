"""SPEC §9.2: how much of the simulated GPU's capacity a five-phase sequential run turns into
useful tokens, and how much of what it decodes is thrown away.

The fake Ollama runs in its own process with the production config's models at Ollama's sizes
and tokens/s on a 12 GiB card (qwen3:30b-a3b spills to the CPU), at a time scale where a phase
lasts seconds. The service runs the production config's five data types, one sequential
phase each (quality, quality, volume, quality, volume: three swaps and a same-model handover).

Figures, all from one window: the fake's, from the service's first model load until the run
returns (its stats are read then):

- ``limit``: the fake's ``limit_tokens``, the integral of the GPU owner's max rate
  (tokens_per_s x GPU share factor x slots^0.6); load time counts in it as lost capacity.
- ``decoded``: every token the fake decoded (``tokens_generated``), thinking included.
- ``useful``: the tokens of batches that succeeded, as the service recorded them:
  ``SUM(eval_tokens - wasted_tokens)`` over ``status = 'ok'`` batches. ``eval_tokens`` sums
  the answers a batch used (a truncated answer's cut-off tail included), ``wasted_tokens``
  the tails and the failed attempts' tokens; subtracting all of it undercounts useful tokens
  when a failed attempt's tokens are not in ``eval_tokens``, never overcounts.
- ``waste``: ``(decoded - useful) / decoded``: whatever the fake decoded that no succeeded
  batch kept (failed attempts, cut-off tails, failed batches, requests abandoned at a stop).

A poller reads the fake's stats every ``POLL_S`` seconds, so the gap to the limit is also
split by phase (the service's ``phase_log``), with swaps between phases on their own.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_common import (
    PRODUCTION_DAILY,
    PRODUCTION_TYPES,
    FakeProcess,
    alone_rate,
    fake_ollama,
    load_text,
    run_until_done,
    service_config,
)

from gen_service.adapters.backend import ChatRequest, Completion
from gen_service.adapters.ollama import OllamaBackend
from gen_service.config import load_config
from gen_service.logs import configure_logging

POLL_S = 0.2
SLOTS = 4
SHARING = 0.6  # the fake's k^0.6


class RequestLog:
    """Times every chat request the service sends (a wrapper around OllamaBackend.chat, set
    for the run only): when it went out, when its answer was in, and for which model."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.calls: list[tuple[float, float, str]] = []
        # Per request: real seconds it took beyond what the fake simulated (HTTP, the fake's
        # own threads, this process's event loop), and its model.
        self.latency: list[tuple[float, str]] = []

    def __enter__(self) -> RequestLog:
        original = OllamaBackend.chat
        calls, latency, scale = self.calls, self.latency, self.scale

        async def timed(backend: OllamaBackend, request: ChatRequest) -> Completion:
            sent = time.time()
            try:
                completion = await original(backend, request)
            finally:
                calls.append((sent, time.time(), request.model))
            latency.append((calls[-1][1] - sent - completion.total_s * scale, request.model))
            return completion

        self._original = original
        OllamaBackend.chat = timed  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        OllamaBackend.chat = self._original  # type: ignore[method-assign]

    def slot_loss(self, model: str, t0: float, t1: float, slots: int) -> float:
        """Capacity lost in [t0, t1] to slots without a request, as a share of the span:
        the mean of 1 - (k/slots)^0.6 over time, k the requests of ``model`` in flight."""
        if t1 <= t0:
            return 0.0
        edges = sorted(
            [(max(a, t0), 1) for a, b, m in self.calls if m == model and a < t1 and b > t0]
            + [(min(b, t1), -1) for a, b, m in self.calls if m == model and a < t1 and b > t0]
        )
        k, last, lost = 0, t0, 0.0
        for t, step in edges:
            lost += (t - last) * (1 - (min(k, slots) / slots) ** SHARING)
            last, k = t, k + step
        lost += (t1 - last) * (1 - (min(k, slots) / slots) ** SHARING)
        return float(lost / (t1 - t0))

    def last_start(self, model: str, t0: float, t1: float) -> float:
        starts = [a for a, _, m in self.calls if m == model and t0 <= a <= t1]
        return max(starts) if starts else t0


@dataclass
class Poller:
    """Samples the fake's (decoded, limit) every POLL_S seconds in a thread."""

    fake: FakeProcess
    points: list[tuple[float, int, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(POLL_S):
            self.sample()

    def sample(self) -> None:
        s = self.fake.stats()
        self.points.append((time.time(), int(s["tokens_generated"]), float(s["limit_tokens"])))

    def at(self, moment: float) -> tuple[int, float]:
        """(decoded, limit) at the last poll before ``moment``."""
        best = (0, 0.0)
        for t, decoded, limit in self.points:
            if t > moment:
                break
            best = (decoded, limit)
        return best


@dataclass
class Segment:
    """A stretch of the run: a phase (or the gap between two), and what it did with the GPU."""

    name: str
    seconds: float
    ratio: float  # decoded / limit within it (the poller's resolution)
    share: float  # of the run's limit
    steady_loss: float  # share of the segment's capacity lost to idle slots before the tail
    tail_loss: float  # ... after the phase's last request went out
    tail_s: float


@dataclass
class Result:
    wall_s: float
    limit: float
    decoded: int
    useful: int
    recorded_waste: int  # wasted_tokens of every batch + eval_tokens of failed batches
    prompt_loss: float  # tokens of capacity lost while slots evaluated prompts (estimate)
    latency_loss: float  # ... while requests waited beyond the simulation (estimate)
    loads: dict[str, int]
    window_s: float
    batches: int
    attempts: int
    segments: list[Segment]

    @property
    def utilization(self) -> float:
        return self.useful / self.limit if self.limit else 0.0

    @property
    def waste(self) -> float:
        return (self.decoded - self.useful) / self.decoded if self.decoded else 0.0

    def losses(self) -> dict[str, float]:
        """The gap to the limit, split by where it sits (shares of the limit)."""
        steady = sum(s.share * s.steady_loss for s in self.segments)
        tails = sum(s.share * s.tail_loss for s in self.segments)
        between = sum(s.share for s in self.segments if s.name.startswith("("))
        return {
            "slots idle between requests": steady,
            "phase tails": tails,
            "between phases (swaps)": between,
            "prompt evaluation": self.prompt_loss / self.limit,
            "request latency beyond the simulation": self.latency_loss / self.limit,
        }


# While one of four slots evaluates a prompt or waits on HTTP, the other three decode at
# alone x 3^0.6 instead of alone x 4^0.6: (4^0.6 - 3^0.6) x alone tokens lost per second.
SLOT_LOSS = SLOTS**SHARING - (SLOTS - 1) ** SHARING


def _targets(share: float) -> dict[str, int]:
    """Each type's daily target times ``share`` (1: a production day's phases)."""
    return {name: max(1, round(PRODUCTION_DAILY[name] * share)) for name, *_ in PRODUCTION_TYPES}


def run_once(scale: float, share: float, load_s: float, seed: int, truncate: float = 0.0) -> Result:
    spec: dict[str, Any] = {"time_scale": scale, "load_s": load_s, "seed": seed}
    if truncate:
        spec["faults"] = {"truncate": truncate}
    with fake_ollama(spec) as fake, tempfile.TemporaryDirectory() as tmp, RequestLog(scale) as log:
        cfg = load_config(service_config(Path(tmp), fake.url, targets=_targets(share)))
        configure_logging("json", "warning", stream=open("/dev/null", "w"))  # noqa: SIM115
        poller = Poller(fake)
        thread = threading.Thread(target=poller.run, daemon=True)
        thread.start()
        started = time.perf_counter()
        run_until_done(cfg)
        wall = time.perf_counter() - started
        stats = fake.stats()
        poller.stop.set()
        thread.join()
        poller.sample()
        return _result(cfg.service.db, stats, wall, poller, log)


def _result(
    db: Path, stats: dict[str, Any], wall: float, poller: Poller, log: RequestLog
) -> Result:
    conn = sqlite3.connect(db)
    useful, batches, attempts = conn.execute(
        "SELECT SUM(eval_tokens - wasted_tokens), COUNT(*), SUM(attempts) FROM batches"
        " WHERE status = 'ok'"
    ).fetchone()
    # The fake reports simulated durations: what a request spent neither loading nor decoding
    # was its prompt's evaluation (plus the 0.25 ms the fake adds).
    prompt_s = dict(
        conn.execute(
            "SELECT model, SUM(total_s - load_s - eval_s) FROM batches GROUP BY model"
        ).fetchall()
    )
    recorded = conn.execute(
        "SELECT SUM(wasted_tokens) + SUM(CASE WHEN status = 'failed' THEN eval_tokens ELSE 0"
        " END) FROM batches"
    ).fetchone()[0]
    spans = conn.execute(
        "SELECT phase, model, started_at, ended_at FROM phase_log WHERE kind = 'generate'"
        " ORDER BY id"
    ).fetchall()
    conn.close()
    limit = float(stats["limit_tokens"])
    segments: list[Segment] = []
    previous_end: float | None = None
    for name, model, start, end in spans:
        t0, t1 = _epoch(start), _epoch(end)
        if previous_end is not None and t0 > previous_end:
            segments.append(_segment("(between phases)", "", previous_end, t0, poller, limit, log))
        segments.append(_segment(name, model, t0, t1, poller, limit, log))
        previous_end = t1
    return Result(
        wall_s=wall,
        limit=limit,
        decoded=int(stats["tokens_generated"]),
        useful=int(useful or 0),
        recorded_waste=int(recorded or 0),
        prompt_loss=sum(SLOT_LOSS * alone_rate(m) * sec for m, sec in prompt_s.items()),
        latency_loss=sum(
            SLOT_LOSS * alone_rate(m) * max(0.0, late) / log.scale for late, m in log.latency
        ),
        loads=dict(stats["loads"]),
        window_s=float(stats["limit_window_s"]),
        batches=int(batches),
        attempts=int(attempts),
        segments=segments,
    )


def _segment(
    name: str, model: str, t0: float, t1: float, poller: Poller, limit: float, log: RequestLog
) -> Segment:
    d0, l0 = poller.at(t0)
    d1, l1 = poller.at(t1)
    ratio = (d1 - d0) / (l1 - l0) if l1 > l0 else 0.0
    share = (l1 - l0) / limit if limit else 0.0
    if not model:
        return Segment(name, t1 - t0, ratio, share, 0.0, 0.0, 0.0)
    tail = log.last_start(model, t0, t1)
    span = t1 - t0
    steady = log.slot_loss(model, t0, tail, SLOTS) * (tail - t0) / span
    ending = log.slot_loss(model, tail, t1, SLOTS) * (t1 - tail) / span
    return Segment(name, span, ratio, share, steady, ending, t1 - tail)


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


def bench_utilization(
    scale: float, share: float, load_s: float, runs: int, truncate: float = 0.0
) -> None:
    faults = (
        f", {truncate:.0%} of answers cut short (the fake's truncate fault)" if truncate else ""
    )
    print(
        f"five sequential phases, {share:g} x the production daily targets per phase, fake"
        f" time scale {scale}, load_s {load_s} (simulated), 12 GiB, {SLOTS} slots{faults};"
        f" {load_text()}"
    )
    results = []
    for i in range(runs):
        r = run_once(scale, share, load_s, seed=i, truncate=truncate)
        results.append(r)
        print(
            f"run {i + 1}: {r.wall_s:.1f} s wall, {r.window_s:,.0f} simulated s;"
            f" limit {r.limit:,.0f}, decoded {r.decoded:,}, useful {r.useful:,}"
            f" -> useful/limit {r.utilization:.3f} (decoded/limit {r.decoded / r.limit:.3f}),"
            f" waste {r.waste:.2%} (recorded by the service: {r.recorded_waste:,} ="
            f" {r.recorded_waste / r.decoded:.2%}); {r.batches} ok batches, {r.attempts}"
            f" attempts, loads {r.loads}; {load_text()}"
        )
        for g in r.segments:
            print(
                f"    {g.name:24s} {g.seconds:6.1f} s  {g.share:6.1%} of the limit,"
                f" decoded/limit {g.ratio:.3f}; idle slots: {g.steady_loss:.1%} before the"
                f" tail, {g.tail_loss:.1%} in the tail ({g.tail_s:.1f} s)"
            )
        print("    gap to the limit: " + ", ".join(f"{k} {v:.1%}" for k, v in r.losses().items()))
    util = [r.utilization for r in results]
    waste = [r.waste for r in results]
    print(
        f"useful/limit: median {statistics.median(util):.3f} (min {min(util):.3f}, max"
        f" {max(util):.3f}) over {runs} runs (target >= 0.96)"
    )
    print(
        f"waste: median {statistics.median(waste):.2%} (min {min(waste):.2%}, max"
        f" {max(waste):.2%}) (target <= 3%)"
    )
