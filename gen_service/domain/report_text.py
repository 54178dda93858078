"""The daily production report as plain text, laid out like the memo's example (pure)."""

from __future__ import annotations

from gen_service.domain.diversity import Diversity
from gen_service.domain.report import Report, TypeReport

OPENINGS_SHOWN = 3  # per field in the text form; the JSON and HTML forms hold ten


def render_text(report: Report) -> str:
    """The report as text: one block per type, the issues and the status line."""
    title = (
        f"Day {report.day_number} Production Report, {report.day}"
        if report.day_number is not None
        else f"Production Report, {report.day}"
    )
    lines = [title, "=" * len(title)]
    lines.append(f"time zone {report.timezone}; generated {report.generated_at}; {report.database}")
    lines.append("label shares read: observed [designed by the sampler]")
    lines.append("")
    for t in (*report.types, report.totals):
        lines.extend(_type_block(t))
        lines.append("")
    lines.append("Issues:")
    lines.extend(f"- {issue}" for issue in report.issues)
    if not report.issues:
        lines.append("- none")
    lines.append("")
    lines.append(f"Status: {report.status.line}")
    return "\n".join(lines) + "\n"


def _type_block(t: TypeReport) -> list[str]:
    daily = f" ({_pct(t.pct_of_daily)} of the daily target {t.daily_target:,})"
    total = f"{t.accepted_total:,} of {t.total_target:,} in all ({_pct(t.pct_of_total)})"
    out = [f"{t.title}: {t.accepted:,} samples{daily if t.daily_target else ''}; {total}"]
    q = t.quality
    if q.judged:
        out.append(
            f"  - Avg quality: {_score(q.overall)} over {q.judged:,} judged "
            f"(authenticity {_score(q.authenticity)}, consistency {_score(q.consistency)}, "
            f"complexity {_score(q.complexity)}, usability {_score(q.usability)}"
            + (f", label agreement {_score(q.label_agreement)}" if q.label_agreement else "")
            + ")"
        )
    else:
        out.append("  - Avg quality: not judged")
    b = t.batches
    out.append(
        f"  - Batches: {b.total:,} ({b.failed:,} failed, {b.retried:,} retried, {b.flagged:,} "
        f"flagged, {b.regenerated:,} regenerated, {b.waiting_review:,} waiting for review)"
    )
    share = "" if t.duplicate_share is None else f" ({t.duplicate_share:.1%})"
    reasons = ", ".join(f"{r.code} {r.count:,}" for r in t.rejections[:6])
    out.append(
        f"  - Duplicates: {t.duplicates:,}{share}; flagged samples {t.flagged_samples:,}; "
        f"rejected {t.rejected:,}" + (f": {reasons}" if reasons else "")
    )
    out.append(
        f"  - Rate: {t.rate_per_hour:,.1f}/h over the last 24 h"
        + (f"; total reached {t.projected_done}" if t.projected_done else "")
    )
    if t.diversity is not None:
        out.extend(_diversity_lines(t.diversity))
    return out


def _diversity_lines(d: Diversity) -> list[str]:
    cov = d.coverage
    distinct = "-" if d.distinct_2 is None else f"{d.distinct_2:.3f}"
    cells = f"{cov.cells_filled}/{cov.cells} cells (quota key x {cov.second_facet})"
    out = [
        f"  - Diversity: distinct-2 {distinct} over {d.distinct_samples:,} samples; quota keys "
        f"{cov.quota_filled}/{cov.quota_cells}; {cells if cov.second_facet else ''}".rstrip("; ")
    ]
    for f in d.openings:
        if f.top:
            common = "; ".join(f'"{o.words}" {share(o.share)}' for o in f.top[:OPENINGS_SHOWN])
            out.append(f"    openings of {f.field}: {common}")
    for label in d.labels:
        if not label.total:
            continue
        parts = []
        for i, name in enumerate(label.bins):
            observed = label.observed[i] / label.total
            design = "" if label.designed is None else f" [{share(label.designed[i])}]"
            if label.observed[i] or (label.designed and label.designed[i]):
                parts.append(f"{name} {share(observed)}{design}")
        drift = "" if label.distance is None else f"; distance {label.distance:.2f}"
        out.append(f"    {label.title}: {', '.join(parts)}{drift}")
    return out


def share(value: float) -> str:
    """A share as a percentage; below 1% with a decimal, so it never reads as nothing."""
    return f"{value:.1%}" if 0 < value < 0.01 else f"{value:.0%}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
