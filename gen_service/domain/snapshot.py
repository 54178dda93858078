"""What the running service is doing, as plain data: one snapshot feeds the progress bars and
the gauges of ``/metrics`` (built by :mod:`gen_service.service.view`, read at display or scrape
time, so the hot path pays nothing for either)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TypeProgress:
    """One data type's counts toward its targets (accepted: not rejected, not duplicates, not
    in a flagged batch)."""

    datatype: str
    accepted: int
    accepted_today: int
    daily_target: int  # 0: no daily cap
    total_target: int


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    phase: str | None  # None between phases and once every target is met
    models: tuple[str, ...]  # resident for the phase
    phase_types: tuple[str, ...]  # the data types the phase generates (else every type)
    types: tuple[TypeProgress, ...]  # every generated type, in schedule order
    gate: str  # "open", "probing" (the backend is down) or "paused" (the disk refuses writes)
    paused: str | None  # why the gate is closed, for the operator
    queue_depth: int  # writes waiting for the writer
    gpu_shares: Mapping[str, float] = field(default_factory=dict)  # model -> share in VRAM

    def accepted(self) -> int:
        return sum(t.accepted for t in self.types)
