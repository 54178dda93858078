"""The daily report's figures and its three forms (pure), from hand-made rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import zoneinfo
from typing import Any

from gen_service.domain.report import (
    Report,
    ReportRows,
    StoredSample,
    Target,
    TypeRows,
    build_report,
    day_number,
    histogram,
    measured_rate,
    report_json,
)
from gen_service.domain.report_html import render_html
from gen_service.domain.report_text import render_text

from .test_diversity import examples

UTC = dt.UTC
MOMENT = dt.datetime(2025, 1, 3, 12, 0, tzinfo=UTC)


def rows(*types: TypeRows, targets: dict[str, Target] | None = None, **kw: Any) -> ReportRows:
    """Rows of day 3 (2025-01-03, the first day 2025-01-01), at noon UTC."""
    values: dict[str, Any] = {
        "day": "2025-01-03",
        "first_day": "2025-01-01",
        "moment": MOMENT,
        "generated_at": MOMENT,
        "timezone": "UTC",
        "tz": UTC,
        "database": "/data/samples.db",
        "flag_below": 0.7,
        "targets": targets or {t.datatype: Target(20, 100) for t in types},
        "types": types,
    }
    values.update(kw)
    return ReportRows(**values)


def tension(accepted_total: int = 40, per_day: int = 48, **kw: Any) -> TypeRows:
    """Tension building with ``per_day`` accepted in the 24 h before the moment."""
    first = (MOMENT - dt.timedelta(hours=24)).isoformat()
    return TypeRows(
        "tension_building",
        accepted_total=accepted_total,
        window_accepted=per_day,
        window_first=first if per_day else None,
        **kw,
    )


# -- rate, days and the status line -----------------------------------------------------------


def test_measured_rate_uses_at_least_a_minute() -> None:
    """Ten samples in the last ten seconds count as ten per minute (600/h), not 3,600/h."""
    first = (MOMENT - dt.timedelta(seconds=10)).isoformat()
    assert measured_rate(10, first, MOMENT) == 600
    assert measured_rate(24, (MOMENT - dt.timedelta(hours=24)).isoformat(), MOMENT) == 1
    assert measured_rate(0, None, MOMENT) == 0


def test_day_number_counts_from_the_first_day() -> None:
    """The first day with a batch is day 1; before it there is no number."""
    assert day_number("2025-01-01", "2025-01-03") == 3
    assert day_number("2025-01-01", "2024-12-31") is None
    assert day_number(None, "2025-01-03") is None


def test_on_track_when_the_projection_is_within_the_plan() -> None:
    """60 to go at 2/h: 30 h after noon on the 3rd is the 4th, day 4 of a 5-day plan."""
    report = build_report(rows(tension(accepted_total=40, per_day=48)))
    assert report.status.state == "on_track"
    assert report.status.line == "On track for 100 samples by day 4 (2025-01-04)"
    assert (report.status.projected_day, report.status.planned_days) == (4, 5)
    assert report.types[0].rate_per_hour == 2.0


def test_behind_when_the_projection_passes_the_plan() -> None:
    """60 to go at 0.5/h is 120 h: the 8th, day 8, past the 5 planned days."""
    status = build_report(rows(tension(accepted_total=40, per_day=12))).status
    assert status.state == "behind"
    assert status.line.startswith("Behind: 100 samples by day 8 (2025-01-08)")
    assert "plan 5 days" in status.line


def test_the_slowest_type_decides() -> None:
    """Two types: the one that finishes later sets the projected day."""
    fast = tension(accepted_total=90, per_day=240)
    slow = dataclasses.replace(
        tension(accepted_total=40, per_day=12), datatype="personality_traits"
    )
    status = build_report(rows(fast, slow)).status
    assert status.projected_date == "2025-01-08" and status.target == 200


def test_stalled_and_done() -> None:
    """A type with samples to go and none in the window stalls the line; all met is done."""
    assert build_report(rows(tension(per_day=0))).status.state == "stalled"
    done = build_report(rows(tension(accepted_total=100, per_day=0))).status
    assert done.state == "done" and done.line == "Done: all 100 samples reached"


# -- figures ----------------------------------------------------------------------------------


def test_quality_of_all_types_is_weighted_by_judged_samples() -> None:
    """2 judged at 0.8 and 6 at 0.4: the mean over all is (1.6 + 2.4) / 8 = 0.5."""
    a = tension(judged=2, scores={"overall": 0.8, "authenticity": 0.9})
    b = dataclasses.replace(
        tension(judged=6, scores={"overall": 0.4, "authenticity": 0.5}),
        datatype="relationship_scoring",
    )
    report = build_report(rows(a, b))
    assert report.totals.quality.judged == 8
    assert report.totals.quality.overall == 0.5
    assert report.totals.quality.authenticity == 0.6  # (1.8 + 3.0) / 8
    assert report.totals.quality.consistency is None


def test_rejections_of_all_types_are_merged_most_first() -> None:
    """Codes add up across types and are ordered by count, then name."""
    a = tension(rejections=(("too_short", 3), ("off_brief", 1)))
    b = dataclasses.replace(
        tension(rejections=(("off_brief", 2), ("schema", 2))), datatype="relationship_scoring"
    )
    totals = build_report(rows(a, b)).totals
    assert [(r.code, r.count) for r in totals.rejections] == [
        ("off_brief", 3),
        ("too_short", 3),
        ("schema", 2),
    ]


def test_hours_are_local() -> None:
    """A sample made at 10:15 UTC falls in hour 11 in Berlin (UTC+1 in January)."""
    sample = StoredSample("2025-01-03T10:15:00.000+00:00", "{}", None)
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    report = build_report(rows(tension(samples=(sample,)), tz=berlin, timezone="Europe/Berlin"))
    counts = report.hourly.by_type["tension_building"]
    assert counts[11] == 1 and sum(counts) == 1


def test_score_histogram_bins_tenths() -> None:
    """0.05 in the first tenth, 0.7 in the eighth (lower edges inclusive), 1.0 in the last."""
    edges = tuple(i / 10 for i in range(11))
    assert histogram([0.05, 0.7, 1.0, 0.99], edges) == (1, 0, 0, 0, 0, 0, 0, 1, 0, 2)


def test_issues_name_the_memo_gates() -> None:
    """Failed batches, flagged ones, low quality and too many duplicates are issues."""
    t = tension(
        accepted=97,
        duplicates=3,
        batches=10,
        batches_failed=1,
        batches_flagged=2,
        batches_regenerated=1,
        batches_waiting_review=1,
        judged=5,
        scores={"overall": 0.6},
    )
    issues = build_report(rows(t)).issues
    assert issues[0] == "1 of 10 batches failed (10.0%; the memo allows < 5%)"
    assert "2 batches flagged by the judge" in issues[1] and "1 regenerated" in issues[1]
    assert any("judged quality 0.60, below the memo's minimum 0.75" in i for i in issues)
    assert any("3 duplicates, 3.0% of its samples" in i for i in issues)


def test_diversity_is_measured_from_the_stored_samples() -> None:
    """The day's accepted payloads and briefs feed the diversity figures."""
    payloads = examples("tension_building")
    samples = tuple(
        StoredSample(
            "2025-01-03T09:00:00+00:00",
            json.dumps(p),
            json.dumps({"quota_key": p["technique"], "pins": {}}),
        )
        for p in payloads
    )
    d = build_report(rows(tension(samples=samples))).types[0].diversity
    assert d is not None and d.samples == len(payloads)
    assert d.coverage.quota_filled == len({p["technique"] for p in payloads})
    assert d.distinct_2 is not None


# -- the three forms hold the same figures ----------------------------------------------------


def sample_report() -> Report:
    payloads = examples("tension_building")
    samples = tuple(
        StoredSample("2025-01-03T09:00:00+00:00", json.dumps(p), None) for p in payloads
    )
    t = tension(
        accepted=1487,
        rejected=12,
        duplicates=4,
        batches=100,
        batches_failed=3,
        judged=149,
        scores={"overall": 0.891, "authenticity": 0.92, "consistency": 0.88},
        overall_scores=(0.9, 0.95, 0.5),
        rejections=(("too_short", 12),),
        samples=samples,
    )
    return build_report(rows(t, targets={"tension_building": Target(1500, 12000)}))


def test_json_holds_the_figures() -> None:
    """The JSON form serialises, keys types by name, and carries the shares of coverage."""
    data = json.loads(json.dumps(report_json(sample_report())))
    t = data["types"]["tension_building"]
    assert t["accepted"] == 1487 and t["daily_target"] == 1500 and t["pct_of_daily"] == 99.1
    assert t["quality"]["overall"] == 0.891 and t["batches"]["failed"] == 3
    assert t["rejections"] == [{"code": "too_short", "count": 12}]
    assert t["diversity"]["coverage"]["quota_share"] is not None
    assert data["status"]["line"] and data["score_histogram"]["by_type"]["tension_building"]
    assert data["hourly"]["by_type"]["tension_building"][9] == 10


def test_text_and_html_show_the_same_figures() -> None:
    """Counts, quality, failures, rejection codes and the status line appear in both forms."""
    report = sample_report()
    text, html = render_text(report), render_html(report)
    assert text.startswith("Day 3 Production Report, 2025-01-03")
    for figure in ("1,487", "0.89", "too_short", report.status.line, "distinct-2"):
        assert figure in text, figure
        assert figure in html, figure
    assert "Tension building: 1,487 samples (99% of the daily target 1,500)" in text


def test_html_is_self_contained_with_its_charts() -> None:
    """No script, no external resource; the four kinds of chart by id, each with a title."""
    html = render_html(sample_report())
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=""", html)
    assert not re.search(r"url\(", html)
    for chart in (
        "chart-progress",
        "chart-hourly",
        "chart-quality",
        "chart-labels-tension-building-technique",
    ):
        assert re.search(rf'<svg [^>]*id="{chart}"', html), chart
        assert f'<title id="{chart}-title">' in html


def test_html_escapes_text_from_the_database() -> None:
    """A type name and a reason code holding markup are shown as text, not run."""
    t = TypeRows("<b>evil</b>", accepted=1, rejections=(("<script>alert(1)</script>", 1),))
    html = render_html(build_report(rows(t, tension())))
    assert "<script>" not in html and "<b>evil</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;evil&lt;/b&gt;" in html
