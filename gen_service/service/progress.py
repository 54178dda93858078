"""Progress bars for a foreground run (``[service] progress``): one bar per data type of the
current phase, accepted today against the daily target and in all against the total, under a
line with the phase, its model, samples per hour and the gate's state (a pause and why).

Logs keep flowing while the bars show, at the configured level: every log line is printed
through the bars' own rich Console, which writes it above the bars and redraws them below, so
nothing tears the display and nothing is hidden (lowering the level to warnings while the bars
are up would hide the one ``batch.committed`` event per batch that says what each request
produced). Under systemd (no terminal) or with JSON logs, ``auto`` draws nothing and logging
is untouched.
"""

from __future__ import annotations

import collections
import contextlib
import io
import time
from collections.abc import Callable, Iterator
from typing import Literal, TextIO, cast

import anyio
import structlog
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gen_service.domain.snapshot import ServiceSnapshot

REFRESH_S = 0.5  # redraw interval: fast enough to look alive, cheap at any batch rate
MIN_REDRAW_S = 0.1  # after a log line, redraw at most this often
RATE_WINDOW_S = 600.0  # samples per hour over the last ten minutes


def progress_console(
    mode: Literal["auto", "on", "off"],
    log_format: Literal["auto", "json", "console"],
    console: Console | None = None,
) -> Console | None:
    """The console to draw bars on, or None for plain logs. ``auto``: when stderr (or the
    given console) is a terminal and logs are not JSON; ``on``: always, drawing with terminal
    codes even where stderr does not look like a terminal; ``off``: never."""
    if mode == "off":
        return None
    if console is None:
        console = Console(stderr=True, force_terminal=True if mode == "on" else None)
    if mode == "on":
        return console
    return console if console.is_terminal and log_format != "json" else None


class SampleRate:
    """Accepted samples per hour over the last :data:`RATE_WINDOW_S`, from successive totals
    (at least a minute, as ``status`` counts). A total that drops (a flagged batch stops
    counting) is not negative production: only rises count."""

    def __init__(self, now: float, total: int) -> None:
        self._last_total = total
        self._produced = 0
        self._points: collections.deque[tuple[float, int]] = collections.deque([(now, 0)])

    def update(self, now: float, total: int) -> float:
        self._produced += max(0, total - self._last_total)
        self._last_total = total
        if now - self._points[-1][0] >= 1.0:  # a point a second at most: the deque stays small
            self._points.append((now, self._produced))
        while len(self._points) > 2 and self._points[1][0] <= now - RATE_WINDOW_S:
            self._points.popleft()
        since, base = self._points[0]
        return (self._produced - base) * 3600 / max(now - since, 60.0)


def render(snap: ServiceSnapshot, per_hour: float) -> RenderableType:
    """The header line and a bar pair per data type of the phase."""
    header = Text()
    header.append("phase ", style="dim")
    header.append(snap.phase or "-", style="bold")
    if snap.models:
        shares = [
            f"{m} {snap.gpu_shares[m]:.0%} on GPU" if m in snap.gpu_shares else m
            for m in snap.models
        ]
        header.append(f"  model {', '.join(shares)}")
    header.append(f"  {per_hour:,.0f} samples/h")
    if snap.gate == "open":
        header.append("  running", style="green")
    else:
        header.append(f"  PAUSED ({snap.gate}): {snap.paused or ''}", style="bold red")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(width=24)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(width=16)
    grid.add_column(justify="right", no_wrap=True)
    shown = set(snap.phase_types)
    for t in snap.types:
        if t.datatype not in shown:
            continue
        if t.daily_target:
            today = f"{t.accepted_today:,}/{t.daily_target:,} today"
        else:
            today = f"{t.accepted_today:,} today"
        pct = f" {t.accepted / t.total_target:.0%}" if t.total_target else ""
        grid.add_row(
            t.datatype,
            ProgressBar(
                total=t.daily_target or None, completed=min(t.accepted_today, t.daily_target)
            ),
            today,
            ProgressBar(total=max(1, t.total_target), completed=min(t.accepted, t.total_target)),
            f"{t.accepted:,}/{t.total_target:,} total{pct}",
        )
    return Group(header, grid)


async def show_progress(
    snapshot: Callable[[], ServiceSnapshot], console: Console, *, refresh_s: float = REFRESH_S
) -> None:
    """Draw the bars until cancelled (the service's end); the last frame stays on screen.
    A frame is made when it is drawn: every ``refresh_s``, and after a log line (at most
    every :data:`MIN_REDRAW_S`), so the bars never lag behind the log above them."""
    # time.monotonic, not anyio's clock: a log line may come from a worker thread.
    rate = SampleRate(time.monotonic(), snapshot().accepted())

    def frame() -> RenderableType:
        snap = snapshot()
        return render(snap, rate.update(time.monotonic(), snap.accepted()))

    live = Live(console=console, auto_refresh=False, transient=False, get_renderable=frame)
    drawn = time.monotonic()

    def after_log_line() -> None:
        nonlocal drawn
        if time.monotonic() - drawn >= MIN_REDRAW_S:
            drawn = time.monotonic()
            live.refresh()

    with logs_through(console, after_log_line), live:
        try:
            while True:
                await anyio.sleep(refresh_s)
                drawn = time.monotonic()
                live.refresh()
        finally:
            live.refresh()


@contextlib.contextmanager
def logs_through(console: Console, after: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Print structlog's lines through ``console`` (above live bars) while inside; call
    ``after`` once a write's lines are out."""
    previous = structlog.get_config()["logger_factory"]
    lines = cast(TextIO, _ConsoleLines(console, after))  # a TextIOBase: write() is enough
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(lines))
    try:
        yield
    finally:
        structlog.configure(logger_factory=previous)


class _ConsoleLines(io.TextIOBase):
    """A text stream that prints each complete line through a rich Console. Soft wrap: a
    long line (a JSON event) stays one line, wrapped by the terminal, not split by rich."""

    def __init__(self, console: Console, after: Callable[[], None]) -> None:
        self._console = console
        self._after = after
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._console.print(Text.from_ansi(line), soft_wrap=True, highlight=False)
        if lines:
            self._after()
        return len(text)

    def isatty(self) -> bool:
        return self._console.is_terminal
