"""The daily production report (SPEC §5, the memo's "Daily Quality Reports"), pure: from the
rows the store's report queries return (:class:`ReportRows`) to the report's figures
(:class:`Report`), and from those to one JSON-ready dict (:func:`report_json`). The text and
HTML pages (:mod:`.report_text`, :mod:`.report_html`) render the same :class:`Report`, so the
three formats hold the same figures.

Per data type: the day's accepted samples against the daily target and, up to that day, against
the total target; the judge's mean and its four dimensions over the samples of the day's batches
it judged; failed, retried, flagged, regenerated batches and those waiting for review;
duplicates and their share; rejections by reason code (``samples.reason`` up to its first
``:``); the measured rate; and the diversity figures (:mod:`.diversity`). For the whole day:
samples per local hour and type, the distribution of judged scores, the issues worth a look,
and the status line "on track for N samples by day D".

The status line projects each type's remaining samples (total target minus accepted) at its
measured rate: accepted per hour over the 24 hours before the report's moment (the end of the
day, or now for today), over the part of that window that has data and at least a minute, as
``gen-service status`` measures its ETA. The slowest type decides the day the totals are
reached; day 1 is the first day with a batch. It is "on track" when that day is within the plan
(the longest total / daily target of any type), "behind" otherwise, "stalled" when a type with
samples to go made none in the window, "done" when every total is met.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.diversity import Diversity, measure, parse_json
from gen_service.domain.judging import DIMENSIONS

# The memo's quality gates ("Quality Metrics") and volume targets ("Success Metrics").
MEMO_MINIMUM_QUALITY = 0.75
MEMO_TARGET_QUALITY = 0.85
MEMO_MAX_DUPLICATE_SHARE = 0.02
MEMO_MAX_FAILED_SHARE = 0.05
SCORE_EDGES = tuple(round(i / 10, 1) for i in range(11))  # the quality histogram's bins
MIN_WINDOW_S = 60.0
# Issues about diversity are raised only with enough samples to judge by.
LABEL_DRIFT = 0.25
LABEL_DRIFT_MIN_SAMPLES = 50
COVERAGE_LOW = 0.8
COVERAGE_MIN_SAMPLES_PER_CELL = 3  # by then random briefs would fill about 95% of the cells


# -- what the queries return -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredSample:
    created_at: str  # UTC ISO-8601
    payload: str  # JSON text
    brief: str | None  # JSON text


@dataclass(frozen=True, slots=True)
class TypeRows:
    """One data type's rows for the report's day."""

    datatype: str
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    flagged: int = 0  # samples of flagged batches (they stopped counting)
    accepted_total: int = 0  # up to and including the day
    batches: int = 0
    batches_failed: int = 0
    batches_retried: int = 0  # needed more than one attempt
    batches_flagged: int = 0
    batches_regenerated: int = 0  # replacements of flagged batches, written that day
    batches_waiting_review: int = 0
    judged: int = 0
    scores: Mapping[str, float | None] = dataclasses.field(default_factory=dict)  # means
    label_agreement: float | None = None
    overall_scores: tuple[float, ...] = ()  # every judged sample's overall score
    rejections: tuple[tuple[str, int], ...] = ()  # (reason code, count), most first
    window_accepted: int = 0  # accepted in the 24 h before the report's moment
    window_first: str | None = None  # the first batch in that window (UTC ISO)
    samples: tuple[StoredSample, ...] = ()  # the day's accepted samples, in commit order


@dataclass(frozen=True, slots=True)
class Target:
    daily: int
    total: int


@dataclass(frozen=True, slots=True)
class ReportRows:
    day: str  # YYYY-MM-DD, local
    first_day: str | None  # the first day with a batch
    moment: dt.datetime  # what "now" is for the report: the day's end, or now for today
    generated_at: dt.datetime
    timezone: str
    tz: dt.tzinfo
    database: str
    flag_below: float
    targets: Mapping[str, Target]
    types: Sequence[TypeRows]
    test_data: int = 0  # the day's accepted samples made on a test double (the fake Ollama)


# -- the figures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchFigures:
    total: int
    failed: int
    retried: int
    flagged: int
    regenerated: int
    waiting_review: int


@dataclass(frozen=True, slots=True)
class Quality:
    judged: int
    overall: float | None
    authenticity: float | None
    consistency: float | None
    complexity: float | None
    usability: float | None
    label_agreement: float | None


@dataclass(frozen=True, slots=True)
class ReasonCount:
    code: str
    count: int


@dataclass(frozen=True, slots=True)
class TypeReport:
    datatype: str
    title: str
    accepted: int
    daily_target: int
    pct_of_daily: float | None
    accepted_total: int
    total_target: int
    pct_of_total: float | None
    rejected: int
    duplicates: int
    duplicate_share: float | None  # of the day's valid samples (accepted, duplicate, flagged)
    flagged_samples: int
    batches: BatchFigures
    quality: Quality
    rejections: tuple[ReasonCount, ...]
    rate_per_hour: float
    projected_done: str | None  # the local day this type's total is reached at its rate
    diversity: Diversity | None


@dataclass(frozen=True, slots=True)
class Hourly:
    """Accepted samples per local hour (0..23) of the day, per type."""

    hours: tuple[str, ...]
    by_type: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class ScoreHistogram:
    edges: tuple[float, ...]
    by_type: Mapping[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Status:
    state: str  # "on_track" | "behind" | "stalled" | "done" | "no_targets"
    line: str
    target: int  # samples in all (the sum of the total targets)
    accepted: int
    projected_day: int | None
    projected_date: str | None
    planned_days: int | None


@dataclass(frozen=True, slots=True)
class Report:
    day: str
    day_number: int | None  # day 1 is the first day with a batch
    timezone: str
    generated_at: str
    database: str
    flag_below: float
    types: tuple[TypeReport, ...]
    totals: TypeReport  # every type together (title "All types"; no diversity)
    samples_per_hour: float
    hourly: Hourly
    score_histogram: ScoreHistogram
    issues: tuple[str, ...]
    status: Status
    test_data_samples: int  # the day's accepted samples made on a test double: not real data


# -- building ----------------------------------------------------------------------------------


def build_report(rows: ReportRows) -> Report:
    """The report's figures from the rows of its day."""
    types = tuple(_type_report(rows, t) for t in rows.types)
    totals = _totals(types, rows.types)
    return Report(
        day=rows.day,
        day_number=day_number(rows.first_day, rows.day),
        timezone=rows.timezone,
        generated_at=rows.generated_at.isoformat(timespec="seconds"),
        database=rows.database,
        flag_below=rows.flag_below,
        types=types,
        totals=totals,
        samples_per_hour=round(sum(t.rate_per_hour for t in types), 1),
        hourly=hourly(rows),
        score_histogram=ScoreHistogram(
            SCORE_EDGES,
            {t.datatype: histogram(t.overall_scores, SCORE_EDGES) for t in rows.types},
        ),
        issues=issues(rows, types, totals),
        status=status(rows, types),
        test_data_samples=rows.test_data,
    )


def _type_report(rows: ReportRows, t: TypeRows) -> TypeReport:
    target = rows.targets.get(t.datatype, Target(0, 0))
    spec = REGISTRY.get(t.datatype)
    rate = measured_rate(t.window_accepted, t.window_first, rows.moment)
    remaining = max(0, target.total - t.accepted_total)
    projected = None
    if remaining == 0 and target.total:
        projected = rows.day
    elif rate > 0:
        done_at = rows.moment + dt.timedelta(hours=remaining / rate)
        projected = done_at.astimezone(rows.tz).date().isoformat()
    payloads = [parse_json(s.payload) for s in t.samples]
    readable = [(p, parse_json(s.brief)) for p, s in zip(payloads, t.samples, strict=True) if p]
    diversity = measure(t.datatype, [p for p, _ in readable], [b for _, b in readable])
    return TypeReport(
        datatype=t.datatype,
        title=spec.title if spec is not None else t.datatype,
        accepted=t.accepted,
        daily_target=target.daily,
        pct_of_daily=_pct(t.accepted, target.daily),
        accepted_total=t.accepted_total,
        total_target=target.total,
        pct_of_total=_pct(t.accepted_total, target.total),
        rejected=t.rejected,
        duplicates=t.duplicates,
        duplicate_share=_share(t.duplicates, t.accepted + t.duplicates + t.flagged),
        flagged_samples=t.flagged,
        batches=BatchFigures(
            t.batches,
            t.batches_failed,
            t.batches_retried,
            t.batches_flagged,
            t.batches_regenerated,
            t.batches_waiting_review,
        ),
        quality=Quality(
            judged=t.judged,
            label_agreement=_round(t.label_agreement),
            **{k: _round(t.scores.get(k)) for k in ("overall", *DIMENSIONS)},
        ),
        rejections=tuple(ReasonCount(code, n) for code, n in t.rejections),
        rate_per_hour=round(rate, 1),
        projected_done=projected,
        diversity=diversity,
    )


def _totals(types: Sequence[TypeReport], rows: Sequence[TypeRows]) -> TypeReport:
    judged = sum(t.quality.judged for t in types)

    def mean(name: str) -> float | None:
        pairs = [
            (getattr(t.quality, name), t.quality.judged)
            for t in types
            if getattr(t.quality, name) is not None
        ]
        weight = sum(n for _, n in pairs)
        return round(sum(v * n for v, n in pairs) / weight, 3) if weight else None

    codes: dict[str, int] = {}
    for t in types:
        for r in t.rejections:
            codes[r.code] = codes.get(r.code, 0) + r.count
    accepted = sum(t.accepted for t in types)
    duplicates = sum(t.duplicates for t in types)
    flagged = sum(t.flagged_samples for t in types)
    daily = sum(t.daily_target for t in types)
    total_target = sum(t.total_target for t in types)
    accepted_total = sum(t.accepted_total for t in types)
    return TypeReport(
        datatype="all",
        title="All types",
        accepted=accepted,
        daily_target=daily,
        pct_of_daily=_pct(accepted, daily),
        accepted_total=accepted_total,
        total_target=total_target,
        pct_of_total=_pct(accepted_total, total_target),
        rejected=sum(t.rejected for t in types),
        duplicates=duplicates,
        duplicate_share=_share(duplicates, accepted + duplicates + flagged),
        flagged_samples=flagged,
        batches=BatchFigures(
            *(sum(getattr(t.batches, f.name) for t in types) for f in _fields(BatchFigures))
        ),
        quality=Quality(
            judged=judged,
            label_agreement=mean("label_agreement"),
            **{k: mean(k) for k in ("overall", *DIMENSIONS)},
        ),
        rejections=tuple(
            ReasonCount(c, n) for c, n in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        rate_per_hour=round(sum(t.rate_per_hour for t in types), 1),
        projected_done=max(
            (t.projected_done for t in types if t.total_target), default=None, key=_date_key
        ),
        diversity=None,
    )


def _date_key(value: str | None) -> str:
    return value or "9999-12-31"


def _fields(cls: type[Any]) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


def measured_rate(count: int, first: str | None, moment: dt.datetime) -> float:
    """Accepted per hour over the window that actually has data (at least a minute), the way
    ``gen-service status`` measures it."""
    if not count or first is None:
        return 0.0
    start = dt.datetime.fromisoformat(first)
    hours = max((moment - start).total_seconds(), MIN_WINDOW_S) / 3600
    return count / hours


def day_number(first_day: str | None, day: str) -> int | None:
    """The day's number in the production run: the first day with a batch is day 1."""
    if first_day is None:
        return None
    number = (dt.date.fromisoformat(day) - dt.date.fromisoformat(first_day)).days + 1
    return number if number >= 1 else None


def hourly(rows: ReportRows) -> Hourly:
    """Accepted samples per local hour of the day, per type."""
    by_type: dict[str, tuple[int, ...]] = {}
    for t in rows.types:
        counts = [0] * 24
        for s in t.samples:
            local = dt.datetime.fromisoformat(s.created_at).astimezone(rows.tz)
            counts[local.hour] += 1
        by_type[t.datatype] = tuple(counts)
    return Hourly(tuple(f"{h:02d}" for h in range(24)), by_type)


def histogram(values: Sequence[float], edges: Sequence[float]) -> tuple[int, ...]:
    """Counts per bin between ``edges``; the last bin includes its upper edge."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        for i in range(len(counts)):
            if edges[i] <= v < edges[i + 1] or (i == len(counts) - 1 and v == edges[-1]):
                counts[i] += 1
                break
    return tuple(counts)


def status(rows: ReportRows, types: Sequence[TypeReport]) -> Status:
    """The status line: when the totals are reached at the measured rates, against the plan."""
    counted = [t for t in types if t.total_target > 0]
    target = sum(t.total_target for t in counted)
    accepted = sum(min(t.accepted_total, t.total_target) for t in counted)
    if not counted:
        return Status("no_targets", "No total targets are set", 0, 0, None, None, None)
    plans = [math.ceil(t.total_target / t.daily_target) for t in counted if t.daily_target]
    planned = max(plans) if plans else None
    if all(t.accepted_total >= t.total_target for t in counted):
        return Status(
            "done", f"Done: all {target:,} samples reached", target, accepted, None, None, planned
        )
    stalled = [
        t.datatype for t in counted if t.accepted_total < t.total_target and not t.rate_per_hour
    ]
    if stalled:
        line = (
            f"Stalled: {', '.join(stalled)} made no samples in the last 24 h; "
            f"{target - accepted:,} of {target:,} samples to go"
        )
        return Status("stalled", line, target, accepted, None, None, planned)
    projected_date = max((t.projected_done for t in counted if t.projected_done), key=_date_key)
    number = day_number(rows.first_day or rows.day, projected_date)
    if planned is None or (number is not None and number <= planned):
        state = "on_track"
        line = f"On track for {target:,} samples by day {number} ({projected_date})"
    else:
        state = "behind"
        line = (
            f"Behind: {target:,} samples by day {number} ({projected_date}) at the measured "
            f"rate; the targets plan {planned} days"
        )
    return Status(state, line, target, accepted, number, projected_date, planned)


def issues(rows: ReportRows, types: Sequence[TypeReport], totals: TypeReport) -> tuple[str, ...]:
    """What deserves a look, as the memo's "Issues" lists it, worst first."""
    found: list[str] = []
    if rows.test_data:
        found.append(
            f"{rows.test_data:,} of the day's accepted samples were generated by a test double "
            "(the fake Ollama): they are not real data, and the export leaves them out"
        )
    b = totals.batches
    if b.failed:
        share = b.failed / b.total if b.total else 0.0
        found.append(
            f"{b.failed:,} of {b.total:,} batches failed ({share:.1%}"
            + (f"; the memo allows < {MEMO_MAX_FAILED_SHARE:.0%}" if share >= 0.05 else "")
            + ")"
        )
    if b.flagged:
        found.append(
            f"{b.flagged:,} batches flagged by the judge (below {rows.flag_below:.2f} or labels "
            f"disagreeing): {b.regenerated:,} regenerated, {b.waiting_review:,} waiting for "
            "review"
        )
    for t in types:
        q = t.quality.overall
        if q is not None and q < MEMO_MINIMUM_QUALITY:
            found.append(
                f"{t.datatype}: judged quality {q:.2f}, below the memo's minimum "
                f"{MEMO_MINIMUM_QUALITY:.2f}"
            )
        if t.duplicate_share is not None and t.duplicate_share >= MEMO_MAX_DUPLICATE_SHARE:
            found.append(
                f"{t.datatype}: {t.duplicates:,} duplicates, {t.duplicate_share:.1%} of its "
                f"samples (the memo allows < {MEMO_MAX_DUPLICATE_SHARE:.0%})"
            )
        d = t.diversity
        if d is None:
            continue
        cov = d.coverage
        enough = d.samples >= COVERAGE_MIN_SAMPLES_PER_CELL * cov.cells
        if cov.cells and enough and (cov.cell_share or 0) < COVERAGE_LOW:
            found.append(
                f"{t.datatype}: only {cov.cells_filled} of {cov.cells} facet cells filled "
                f"by {d.samples} samples"
            )
        for label in d.labels:
            if (
                label.distance is not None
                and label.distance > LABEL_DRIFT
                and label.total >= LABEL_DRIFT_MIN_SAMPLES
            ):
                found.append(
                    f"{t.datatype}: {label.title} drifts from the design (distance "
                    f"{label.distance:.2f})"
                )
    return tuple(found)


# -- JSON --------------------------------------------------------------------------------------


def report_json(report: Report) -> dict[str, Any]:
    """The report as one JSON-ready dict: every figure the text and HTML pages show."""
    data = dataclasses.asdict(report)
    data["report"] = "gen-service daily production report"
    for t, source in zip(
        [*data["types"], data["totals"]], [*report.types, report.totals], strict=True
    ):
        d = source.diversity
        if d is not None:
            t["diversity"]["coverage"]["quota_share"] = _round(d.coverage.quota_share)
            t["diversity"]["coverage"]["cell_share"] = _round(d.coverage.cell_share)
    data["types"] = {t["datatype"]: t for t in data["types"]}
    return data


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)
