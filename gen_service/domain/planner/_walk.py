"""Step 4, how the schedule spends time: a clock day walked segment by segment, and a
sequential pass walked phase by phase.

In a clock day the types of a generate phase share its time (water-filling), spare time
backfills the resident model's under-quota types, and a validate phase holds the judge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gen_service.domain.planner._context import Context
from gen_service.domain.planner._inputs import PhaseInput
from gen_service.domain.planner._limits import EPS


def share_time(
    datatypes: Sequence[str], quota: dict[str, float], speed: Mapping[str, float], seconds: float
) -> tuple[dict[str, float], float]:
    """Water-filling: ``datatypes`` share ``seconds`` of their model equally; one that meets
    its quota early leaves the rest of its share to the others. Returns (made, seconds used)
    and lowers ``quota`` by what was made."""
    needs = sorted(datatypes, key=lambda d: quota[d] / speed[d])
    made: dict[str, float] = {}
    left = seconds
    for i, d in enumerate(needs):
        share = left / (len(needs) - i)
        need = quota[d] / speed[d]
        if need <= share:
            made[d] = quota[d]
            left -= need
        else:
            made[d] = share * speed[d]
            left -= share
        quota[d] = max(0.0, quota[d] - made[d])
    return made, seconds - left


# -- a clock day -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    start: int  # minutes after midnight
    end: int
    phase: PhaseInput | None  # None: no phase holds


def day_segments(phases: Iterable[PhaseInput]) -> list[Segment]:
    """The day cut at every phase boundary, wrapped phases split at midnight, gaps filled."""
    pieces: list[Segment] = []
    for p in phases:
        assert p.start is not None and p.end is not None
        if p.end > p.start:
            pieces.append(Segment(p.start, p.end, p))
        else:
            pieces.append(Segment(p.start, 1440, p))
            if p.end > 0:
                pieces.append(Segment(0, p.end, p))
    pieces.sort(key=lambda s: s.start)
    day: list[Segment] = []
    cursor = 0
    for s in pieces:
        if s.start > cursor:
            day.append(Segment(cursor, s.start, None))
        day.append(s)
        cursor = s.end
    if cursor < 1440:
        day.append(Segment(cursor, 1440, None))
    return day


@dataclass
class Day:
    made: dict[str, float] = field(default_factory=dict)  # per type, the whole day
    own: dict[int, dict[str, float]] = field(default_factory=dict)  # per segment
    backfill: dict[int, dict[str, float]] = field(default_factory=dict)
    spare_s: dict[int, float] = field(default_factory=dict)
    idle_s: dict[int, float] = field(default_factory=dict)
    models: dict[int, frozenset[str]] = field(default_factory=dict)  # roles it ran
    resident: frozenset[str] = frozenset()  # at the end of the day


def initial_resident(ctx: Context, segments: Sequence[Segment]) -> frozenset[str]:
    """The models resident at midnight: those of the day's last generate or validate phase."""
    for s in reversed(segments):
        if s.phase is None:
            continue
        if s.phase.kind == "generate":
            return frozenset(ctx.model(d) for d in s.phase.datatypes)
        if s.phase.kind == "validate" and ctx.inp.judge is not None:
            return frozenset({ctx.inp.judge.model})
    return frozenset()


def simulate_day(
    ctx: Context,
    segments: Sequence[Segment],
    quota: dict[str, float],
    resident: frozenset[str],
    from_minute: float = 0.0,
) -> Day:
    """One clock day from ``from_minute``: what each segment makes of ``quota`` (lowered)."""
    day = Day()
    speed = {d: v for d in quota if (v := ctx.speed(d)) is not None}
    order = [d for d in ctx.generate_order() if d in speed]
    for i, seg in enumerate(segments):
        seconds = (seg.end - max(float(seg.start), from_minute)) * 60.0
        if seconds <= 0:
            continue
        phase = seg.phase
        spare = seconds
        if phase is not None and phase.kind == "validate":
            if ctx.inp.judge is not None:
                resident = frozenset({ctx.inp.judge.model})
            day.models[i] = resident
            continue  # the judge holds the GPU to the end of the phase: no backfill
        if phase is not None and phase.kind == "generate":
            todo = [d for d in phase.datatypes if d in speed and quota[d] > EPS]
            if todo:
                resident = frozenset(ctx.model(d) for d in todo)
            elif not ctx.inp.backfill:
                resident = frozenset()
            made, used = share_time(todo, quota, speed, seconds)
            day.own[i] = made
            spare = seconds - used
        elif not ctx.inp.backfill:
            resident = frozenset()
        day.models[i] = resident
        day.spare_s[i] = spare
        if ctx.inp.backfill and spare > EPS:
            extra = [d for d in order if ctx.model(d) in resident and quota[d] > EPS]
            made, used = share_time(extra, quota, speed, spare)
            day.backfill[i] = {d: n for d, n in made.items() if n > 0}
            spare -= used
        day.idle_s[i] = spare
    for per_segment in (*day.own.values(), *day.backfill.values()):
        for d, n in per_segment.items():
            day.made[d] = day.made.get(d, 0.0) + n
    day.resident = resident
    return day


# -- a sequential pass -----------------------------------------------------------------------


def run_pass(
    ctx: Context,
    quota: dict[str, float],
    due: float,
    on_phase: Callable[[int, float, dict[str, float], float], None] | None = None,
) -> tuple[float, dict[str, float], float]:
    """One pass over the phases: each generate phase until its types meet ``quota``, each
    validate phase until the judge has scored what is due. Returns (seconds, made, due)."""
    seconds = 0.0
    made_all: dict[str, float] = {}
    judge_rate = ctx.judge_rate()
    for i, phase in enumerate(ctx.inp.phases):
        took = 0.0
        made: dict[str, float] = {}
        if phase.kind == "generate":
            for d in phase.datatypes:
                v = ctx.speed(d)
                if v is None or quota.get(d, 0.0) <= EPS:
                    continue
                made[d] = quota[d]
                took += quota[d] / v
                quota[d] = 0.0
            due += ctx.judged(made)
        elif phase.kind == "validate" and judge_rate:
            took = due / judge_rate
            made = {}
        judged = due if phase.kind == "validate" and judge_rate else 0.0
        if phase.kind == "validate" and judge_rate:
            due = 0.0
        seconds += took
        for d, n in made.items():
            made_all[d] = made_all.get(d, 0.0) + n
        if on_phase is not None:
            on_phase(i, took, made, judged)
    return seconds, made_all, due
