"""The daily production report as ONE self-contained HTML page (pure): inline CSS and inline SVG
charts, no script, no external resource, readable in any browser and by mail clients. Every
text that comes from the database is escaped.

Chart ids (the rendering check looks for them): ``chart-progress`` (the day's samples against
the daily targets), ``chart-hourly`` (samples per hour per type), ``chart-quality`` (the
distribution of judged scores) and ``chart-labels-<type>-<label>`` (a label's observed shares
beside the designed ones)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from gen_service.domain.diversity import Diversity
from gen_service.domain.report import MEMO_TARGET_QUALITY, Report, TypeReport
from gen_service.domain.report_svg import (
    PALETTE,
    Marker,
    Series,
    paired_bars,
    progress_bars,
    stacked_bars,
)
from gen_service.domain.report_text import share

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid
#ddd; } h3 { margin-bottom: .3em; } .meta { color: #555; }
.status { padding: .7em 1em; border-radius: 6px; font-weight: 600; margin: 1em 0; }
.on_track, .done { background: #e3f4e8; } .behind, .stalled { background: #fdecea; }
.no_targets { background: #eee; }
table { border-collapse: collapse; margin: .6em 0; } th, td { padding: .25em .6em;
border-bottom: 1px solid #e4e4e4; text-align: right; } th:first-child, td:first-child
{ text-align: left; } th { background: #f6f6f6; }
svg.chart { width: 100%; height: auto; max-width: 760px; display: block; margin: .5em 0; }
.labels { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
gap: .6em; } .labels figure { margin: 0; } figcaption { font-size: .9em; color: #444; }
.openings { columns: 2 320px; } .openings div { break-inside: avoid; margin-bottom: .6em; }
ol { margin: .2em 0; padding-left: 1.6em; } .small { font-size: .9em; color: #555; }
"""


def render_html(report: Report) -> str:
    """The whole page."""
    colors = {t.datatype: PALETTE[i % len(PALETTE)] for i, t in enumerate(report.types)}
    title = (
        f"Day {report.day_number} Production Report, {report.day}"
        if report.day_number is not None
        else f"Production Report, {report.day}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">time zone {escape(report.timezone)} · generated '
        f"{escape(report.generated_at)} · {escape(report.database)}</p>",
        f'<p class="status {escape(report.status.state)}" id="status">Status: '
        f"{escape(report.status.line)}</p>",
        "<h2>Issues</h2>",
        _issues(report.issues),
        "<h2>Production</h2>",
        progress_bars(
            "chart-progress",
            "Accepted samples against the daily target",
            "One bar per data type: the day's accepted samples; the black line is its daily "
            "target.",
            [(t.datatype, t.accepted, t.daily_target, colors[t.datatype]) for t in report.types],
        ),
        _production_table(report),
        f"<h3>Accepted samples per hour ({escape(report.timezone)})</h3>",
        stacked_bars(
            "chart-hourly",
            "Accepted samples per hour, by data type",
            f"Accepted samples in each local hour of {report.day}, stacked by data type.",
            report.hourly.hours,
            [Series(d, colors.get(d, "#999"), v) for d, v in report.hourly.by_type.items()],
            y_label="samples",
        ),
        "<h2>Quality</h2>",
        "<h3>Judged scores (the mean of the four dimensions)</h3>",
        stacked_bars(
            "chart-quality",
            "Distribution of judged quality scores",
            "How many judged samples scored in each tenth from 0 to 1 (the mean of the four "
            f"dimensions), stacked by data type; dashed lines: the flag threshold "
            f"{report.flag_below:.2f} and the memo's target {MEMO_TARGET_QUALITY:.2f}.",
            _score_bins(report.score_histogram.edges),
            [
                Series(d, colors.get(d, "#999"), v)
                for d, v in report.score_histogram.by_type.items()
            ],
            y_label="judged samples",
            markers=[
                Marker(report.flag_below, f"flag {report.flag_below:.2f}"),
                Marker(MEMO_TARGET_QUALITY, f"target {MEMO_TARGET_QUALITY:.2f}"),
            ],
        ),
        _quality_table(report),
        "<h2>Rejections by reason</h2>",
        _rejections(report),
        "<h2>Diversity</h2>",
        '<p class="small">distinct-2: distinct word pairs / all word pairs of the main text; '
        "a cell is a quota key combined with a second facet of the brief; bars: observed "
        "share (filled) beside the share the sampler aims for (dashed).</p>",
    ]
    for t in report.types:
        if t.diversity is not None:
            parts.append(_diversity(t, t.diversity, colors[t.datatype]))
    parts.append(
        '<p class="small">The JSON form of this report holds the same figures.</p></body></html>'
    )
    return "\n".join(parts) + "\n"


def chart_id(*parts: str) -> str:
    """An id made of lowercase letters, digits and dashes."""
    return "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") for p in parts)


def _issues(issues: Sequence[str]) -> str:
    if not issues:
        return "<p>None.</p>"
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in issues) + "</ul>"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _score_bins(edges: Sequence[float]) -> list[str]:
    return [f"{a:.1f}" for a in edges[:-1]]


def _production_table(report: Report) -> str:
    """Two tables: the counts against the targets, and what became of the batches."""
    counts = _table(
        ("data type", "accepted", "daily target", "%", "in all", "total target", "%",
         "rate /h", "total reached"),
        [
            (t.title, f"{t.accepted:,}", f"{t.daily_target:,}", _pct(t.pct_of_daily),
             f"{t.accepted_total:,}", f"{t.total_target:,}", _pct(t.pct_of_total),
             f"{t.rate_per_hour:,.1f}", t.projected_done or "-")
            for t in (*report.types, report.totals)
        ],
    )  # fmt: skip
    batches = _table(
        ("data type", "batches", "failed", "retried", "flagged", "regenerated",
         "waiting review", "duplicates", "dup %", "flagged samples", "rejected"),
        [
            (t.title, f"{t.batches.total:,}", f"{t.batches.failed:,}",
             f"{t.batches.retried:,}", f"{t.batches.flagged:,}", f"{t.batches.regenerated:,}",
             f"{t.batches.waiting_review:,}", f"{t.duplicates:,}",
             "-" if t.duplicate_share is None else f"{t.duplicate_share:.1%}",
             f"{t.flagged_samples:,}", f"{t.rejected:,}")
            for t in (*report.types, report.totals)
        ],
    )  # fmt: skip
    return counts + batches


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; every cell escaped, the first column left-aligned."""
    return (
        "<table><tr>"
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        + "</table>"
    )


def _quality_table(report: Report) -> str:
    return _table(
        ("data type", "judged", "overall", "authenticity", "consistency", "complexity",
         "usability", "label agreement"),
        [
            (t.title, f"{t.quality.judged:,}", _score(t.quality.overall),
             _score(t.quality.authenticity), _score(t.quality.consistency),
             _score(t.quality.complexity), _score(t.quality.usability),
             _score(t.quality.label_agreement))
            for t in (*report.types, report.totals)
        ],
    )  # fmt: skip


def _rejections(report: Report) -> str:
    rows = [(t.title, r.code, f"{r.count:,}") for t in report.types for r in t.rejections]
    if not rows:
        return "<p>None.</p>"
    return _table(("data type", "reason code", "samples"), rows)


def _diversity(t: TypeReport, d: Diversity, color: str) -> str:
    cov = d.coverage
    distinct = "-" if d.distinct_2 is None else f"{d.distinct_2:.3f}"
    parts = [
        f'<section id="{chart_id("diversity", t.datatype)}"><h3>{escape(t.title)}</h3>',
        "<table><tr><th>samples</th><th>distinct-2</th><th>over</th><th>quota keys</th>"
        f"<th>cells (quota key × {escape(cov.second_facet or '-')})</th></tr>"
        f"<tr><td>{d.samples:,}</td><td>{distinct}</td><td>{d.distinct_samples:,}</td>"
        f"<td>{cov.quota_filled}/{cov.quota_cells}</td>"
        f"<td>{cov.cells_filled}/{cov.cells}</td></tr></table>",
    ]
    if cov.missing:
        parts.append(
            '<p class="small">unfilled cells: '
            + ", ".join(escape(m) for m in cov.missing)
            + ("…" if cov.cells - cov.cells_filled > len(cov.missing) else "")
            + "</p>"
        )
    openings = [
        f"<div><strong>{escape(f.field)}</strong> ({f.texts:,} texts)<ol>"
        + "".join(f"<li>{escape(o.words)} — {o.count:,} ({share(o.share)})</li>" for o in f.top)
        + "</ol></div>"
        for f in d.openings
        if f.top
    ]
    if openings:
        parts.append('<h4>Most common openings</h4><div class="openings">')
        parts.extend(openings)
        parts.append("</div>")
    charts = []
    for label in d.labels:
        total = label.total
        observed = [n / total if total else 0.0 for n in label.observed]
        drift = "" if label.distance is None else f"; distance {label.distance:.2f}"
        design = "no design (no brief sets it)" if label.designed is None else "designed dashed"
        charts.append(
            "<figure>"
            + paired_bars(
                chart_id("chart-labels", t.datatype, label.label),
                f"{t.title}: {label.title}",
                f"Share of {total:,} accepted samples per bin, observed beside designed.",
                label.bins,
                observed,
                label.designed,
                color=color,
            )
            + f"<figcaption>{escape(label.title)}: {total:,} samples; {design}{drift}"
            "</figcaption></figure>"
        )
    if charts:
        parts.append('<h4>Label distributions</h4><div class="labels">')
        parts.extend(charts)
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)
