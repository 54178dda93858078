"""How ``gen-service plan`` writes its numbers, hours, dates and phase spans, in the table and
in the notes alike."""

from __future__ import annotations

import datetime as dt

from gen_service.domain.planner import PhasePlan


def count(value: float) -> str:
    return f"{value:,.0f}"


def hours(value: float) -> str:
    return f"{value:.1f} h"


def date(value: dt.date | None) -> str:
    return value.isoformat() if value else "-"


def phase_span(p: PhasePlan) -> str:
    return f"{p.start}–{p.end}" if p.start else "-"
