"""Inline SVG charts for the HTML report (pure): no script, no external resource; every text
escaped. Each chart is one ``<svg>`` with an ``id``, a ``<title>`` and a ``<desc>``, so it is
readable by screen readers and findable in the rendered page."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")
_FONT = 'font-family="system-ui, sans-serif"'


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    color: str
    values: Sequence[float]


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at ``at`` (0..1 of the plot's width) with a label."""

    at: float
    label: str


def _open(chart_id: str, title: str, desc: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" class="chart" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{escape(chart_id)}-title '
        f'{escape(chart_id)}-desc">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>',
    ]


def nice_max(value: float) -> float:
    """The axis top for ``value``: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def stacked_bars(
    chart_id: str,
    title: str,
    desc: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    markers: Sequence[Marker] = (),
    width: int = 760,
    height: int = 280,
) -> str:
    """Bars per category, each stacked from the series' values, with a legend."""
    left, right, top, bottom = 52, 12, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    top_value = nice_max(max(totals, default=0))
    slot = plot_w / max(1, len(categories))
    bar_w = slot * 0.78
    out = _open(chart_id, title, desc, width, height)
    out.append(_axes(left, top, plot_w, plot_h, top_value, y_label))
    for i, category in enumerate(categories):
        x = left + i * slot + (slot - bar_w) / 2
        y = float(top + plot_h)
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            h = plot_h * value / top_value
            y -= h
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{escape(s.color)}"><title>{escape(s.name)}, {escape(category)}: '
                f"{_fmt(value)}</title></rect>"
            )
        out.append(
            f'<text x="{left + i * slot + slot / 2:.1f}" y="{top + plot_h + 13}" '
            f'font-size="10" text-anchor="middle" {_FONT}>{escape(category)}</text>'
        )
    for m in markers:
        x = left + plot_w * m.at
        out.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#444" '
            f'stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="{top + 10}" font-size="10" '
            f"{_FONT}>{escape(m.label)}</text>"
        )
    out.append(_legend([(s.name, s.color) for s in series], left, height - 22))
    out.append("</svg>")
    return "\n".join(out)


def paired_bars(
    chart_id: str,
    title: str,
    desc: str,
    categories: Sequence[str],
    observed: Sequence[float],
    designed: Sequence[float] | None,
    *,
    color: str,
    width: int = 360,
    height: int = 190,
) -> str:
    """Observed shares as filled bars, designed shares as outlined bars beside them."""
    left, right, top, bottom = 40, 8, 10, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [*observed, *(designed or ())]
    top_value = nice_max(max(values, default=0) * 100) / 100
    slot = plot_w / max(1, len(categories))
    bar_w = slot * (0.4 if designed is not None else 0.7)
    out = _open(chart_id, title, desc, width, height)
    out.append(_axes(left, top, plot_w, plot_h, top_value, "share", percent=True))
    rotate = len(categories) > 6 or max((len(c) for c in categories), default=0) > 9
    for i, category in enumerate(categories):
        x = left + i * slot + slot * 0.1
        base = top + plot_h
        h = plot_h * observed[i] / top_value
        out.append(
            f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
            f'fill="{escape(color)}"><title>{escape(category)}: observed '
            f"{observed[i]:.0%}</title></rect>"
        )
        if designed is not None:
            hd = plot_h * designed[i] / top_value
            out.append(
                f'<rect x="{x + bar_w:.1f}" y="{base - hd:.1f}" width="{bar_w:.1f}" '
                f'height="{hd:.1f}" fill="none" stroke="#333" stroke-width="1.2" '
                f'stroke-dasharray="3 2"><title>{escape(category)}: designed '
                f"{designed[i]:.0%}</title></rect>"
            )
        cx = left + i * slot + slot / 2
        label = escape(category if len(category) <= 16 else category[:15] + "…")
        if rotate:
            out.append(
                f'<text x="{cx:.1f}" y="{base + 8}" font-size="8" text-anchor="end" '
                f'transform="rotate(-45 {cx:.1f} {base + 8})" {_FONT}>{label}</text>'
            )
        else:
            out.append(
                f'<text x="{cx:.1f}" y="{base + 12}" font-size="9" text-anchor="middle" '
                f"{_FONT}>{label}</text>"
            )
    out.append("</svg>")
    return "\n".join(out)


def progress_bars(
    chart_id: str,
    title: str,
    desc: str,
    rows: Sequence[tuple[str, float, float, str]],
    *,
    width: int = 760,
) -> str:
    """One horizontal bar per row (label, value, target, colour) with the target marked."""
    row_h, left, right, top = 26, 190, 90, 8
    height = top * 2 + row_h * max(1, len(rows))
    plot_w = width - left - right
    scale = nice_max(max((max(v, t) for _, v, t, _ in rows), default=0))
    out = _open(chart_id, title, desc, width, height)
    for i, (label, value, target, color) in enumerate(rows):
        y = top + i * row_h
        w = plot_w * value / scale
        out.append(
            f'<text x="{left - 6}" y="{y + 16}" font-size="11" text-anchor="end" '
            f"{_FONT}>{escape(label)}</text>"
            f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="16" fill="{escape(color)}">'
            f"<title>{escape(label)}: {_fmt(value)} of {_fmt(target)}</title></rect>"
        )
        if target > 0:
            tx = left + plot_w * target / scale
            out.append(
                f'<line x1="{tx:.1f}" y1="{y + 1}" x2="{tx:.1f}" y2="{y + 23}" stroke="#222" '
                f'stroke-width="2"><title>target {_fmt(target)}</title></line>'
            )
        share = f"{value / target:.0%}" if target else "-"
        out.append(
            f'<text x="{left + plot_w + 6}" y="{y + 16}" font-size="11" {_FONT}>'
            f"{_fmt(value)} ({share})</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _axes(
    left: float,
    top: float,
    plot_w: float,
    plot_h: float,
    top_value: float,
    label: str,
    *,
    percent: bool = False,
) -> str:
    parts = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#888"/>'
    ]
    for k in range(3):
        value = top_value * k / 2
        y = top + plot_h - plot_h * k / 2
        text = f"{value:.0%}" if percent else _fmt(value)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" font-size="9" text-anchor="end" '
            f"{_FONT}>{text}</text>"
        )
    parts.append(
        f'<text x="12" y="{top + plot_h / 2:.1f}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + plot_h / 2:.1f})" {_FONT}>{escape(label)}</text>'
    )
    return "".join(parts)


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = []
    for name, color in items:
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" fill="{escape(color)}"/>'
            f'<text x="{x + 14:.1f}" y="{y + 9:.1f}" font-size="10" {_FONT}>'
            f"{escape(name)}</text>"
        )
        x += 24 + 6.2 * len(name)
    return "".join(parts)
