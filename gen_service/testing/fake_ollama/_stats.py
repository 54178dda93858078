"""What the fake reports: the public ``FakeStats`` and ``LoadEvent``, and the live counters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from gen_service.testing.fake_ollama._config import FAULT_NAMES


@dataclass(frozen=True)
class LoadEvent:
    """A residency change.

    ``t`` is seconds since the fake was created (monotonic clock); ``vram_bytes`` is the VRAM the
    model took (load) or gave back (unload, evict), i.e. its ``size_vram``. "unload" is keep_alive
    expiry, ``keep_alive: 0`` or a reload for new runner options; "evict" is VRAM pressure, a
    runner crash, ``evict()`` or ``go_down()``.
    """

    t: float
    kind: Literal["load", "unload", "evict"]
    model: str
    vram_bytes: int


@dataclass(frozen=True)
class FakeStats:
    """What the fake saw since it started or since ``reset_stats``.

    Throughput (see ``_decode``): ``tokens_generated`` and ``tokens_by_model`` count decoded
    tokens (thinking included; at time scale > 0 as they are decoded, so a request cut off
    midway counts what it got); ``limit_tokens`` is the most the GPU could have decoded over
    the window, ``∫ max_rate(owner(t)) dt`` in simulated time, and ``limit_tokens_by_model``
    splits it by owner; ``limit_window_s`` is the simulated seconds integrated (time with an
    owner). ``tokens_generated / limit_tokens`` is the share of the GPU's capacity used.
    """

    requests: int
    chat_requests: int
    status_counts: dict[int, int]
    faults_injected: dict[str, int]
    loads: dict[str, int]
    events: tuple[LoadEvent, ...]
    peak_vram_bytes: int
    vram_bytes_now: int
    resident: tuple[str, ...]
    busy_fraction: float
    busy_fraction_by_model: dict[str, float]
    tokens_generated: int
    judge_requests: int
    judge_matched: int  # judge requests that quoted a remembered sample item
    tokens_by_model: dict[str, int]
    limit_tokens: float
    limit_tokens_by_model: dict[str, float]
    limit_window_s: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (status codes become string keys)."""
        data = dataclasses.asdict(self)
        data["status_counts"] = {str(k): v for k, v in self.status_counts.items()}
        data["events"] = [dataclasses.asdict(e) for e in self.events]
        data["resident"] = list(self.resident)
        return data


@dataclass
class Counters:
    """The mutable counters behind ``FakeStats``; the GPU replaces them on ``reset_stats``."""

    requests: int = 0
    chat_requests: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    faults_injected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_NAMES, 0))
    loads: dict[str, int] = field(default_factory=dict)
    events: list[LoadEvent] = field(default_factory=list)
    peak_vram_bytes: int = 0
    tokens_generated: int = 0
    judge_requests: int = 0
    judge_matched: int = 0
    tokens_by_model: dict[str, int] = field(default_factory=dict)
    limit_tokens: float = 0.0
    limit_tokens_by_model: dict[str, float] = field(default_factory=dict)
    limit_window_s: float = 0.0
    busy_s: dict[str, float] = field(default_factory=dict)
    resident_s: dict[str, float] = field(default_factory=dict)  # closed residency intervals
    since: float | None = None  # monotonic time of the first chat since the last reset
