"""``gen-service status``: the dashboard read from the database, once or with ``--watch``, as
a table or as JSON.

Light on imports: ``status --json`` answers within 200 ms as a whole process (SPEC §9.5), so
it reads two facts of the config file instead of validating it, and never imports rich.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gen_service.errors import EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


def cmd_status(args: argparse.Namespace) -> int:
    # Light on imports: `status --json` answers within 200 ms as a whole process (SPEC §9.5).
    from gen_service.adapters.store.readonly import open_readonly
    from gen_service.service.status import dashboard

    if not args.watch and (args.interval is not None or args.count is not None):
        print("gen-service: error: --interval and --count go with --watch", file=sys.stderr)
        return EXIT_USAGE
    # Not the validated config: status reads two facts of it, fast (see config_file.py).
    facts = None
    if args.db is not None:
        db = args.db
    else:
        from gen_service.config_file import find_config, read_status_facts

        facts = read_status_facts(find_config(args.config))
        db = facts.db
    conn = open_readonly(db)

    def read() -> dict[str, Any]:
        return dashboard(conn, facts, now=dt.datetime.now(dt.UTC))

    try:
        if args.watch:
            interval = 2.0 if args.interval is None else args.interval
            return _watch_status(read, as_json=args.json, interval=interval, count=args.count)
        data = read()
    finally:
        conn.close()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_status(data)
    return EXIT_OK


def _watch_status(
    read: Callable[[], dict[str, Any]], *, as_json: bool, interval: float, count: int | None
) -> int:
    """Refresh until Ctrl-C (exit 0) or ``count`` refreshes: JSON lines, a table redrawn in
    place on a terminal (rich Live), or one table after another when piped."""
    import time

    refreshes = 0

    def more() -> bool:
        return count is None or refreshes < count

    try:
        if as_json:
            while True:
                print(json.dumps(read()), flush=True)
                refreshes += 1
                if not more():
                    return EXIT_OK
                time.sleep(interval)
        from rich.live import Live

        console = _status_console()
        if not console.is_terminal:
            while True:
                console.print(_status_view(read(), watch=interval))
                refreshes += 1
                if not more():
                    return EXIT_OK
                time.sleep(interval)
        with Live(
            _status_view(read(), watch=interval), console=console, auto_refresh=False
        ) as live:
            refreshes = 1
            while more():
                time.sleep(interval)
                live.update(_status_view(read(), watch=interval), refresh=True)
                refreshes += 1
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `status --watch --json | head -1`: the reader is done
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return EXIT_OK


def _print_status(data: dict[str, Any]) -> None:
    _status_console().print(_status_view(data))


def _status_console() -> Console:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=120)
    return console


def _status_view(data: dict[str, Any], *, watch: float | None = None) -> RenderableType:
    """The table per data type and the dashboard line (with --watch: when and how often)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"gen-service — {data['database']}", title_justify="left")
    table.add_column("data type", no_wrap=True)
    for col in (
        "accepted",
        "today",
        "daily target",
        "total target",
        "% total",
        "rejected",
        "duplicates",
        "flagged",
    ):
        table.add_column(col, justify="right")
    for name, row in data["datatypes"].items():
        pct = row["pct_of_total"]
        table.add_row(
            name,
            f"{row['accepted']:,}",
            f"{row['today']:,}",
            f"{row['daily_target']:,}",
            f"{row['total_target']:,}",
            "-" if pct is None else f"{pct:.1f}",
            f"{row['rejected']:,}",
            f"{row['duplicates']:,}",
            f"{row['flagged']:,}",
        )
    state = "running" if data["service_running"] else "not running"
    if data.get("paused"):
        state = f"PAUSED since {data['paused']['since']}: {data['paused']['why']}"
    line = Text(
        f"service {state}; phase {data['current_phase'] or '-'}; model "
        f"{data['current_model'] or '-'}; {data['samples_generated']:,} accepted; "
        f"{data['samples_per_hour']:,.0f}/h over the last hour; "
        f"{data['batches_failed']:,} failed batches; "
        f"quality {_score(data['quality_score_avg'])} over {data['quality']['judged']:,} "
        f"judged; {data['batches_flagged']:,} flagged, {data['batches_regenerated']:,} "
        f"regenerated, {data['batches_waiting_review']:,} waiting for review; "
        f"estimated completion {data['estimated_completion'] or '-'}"
    )
    parts: list[RenderableType] = [table, line]
    if watch is not None:
        now = dt.datetime.now().astimezone().strftime("%H:%M:%S")
        parts.append(Text(f"read at {now}, every {watch:g} s; Ctrl-C stops", style="dim"))
    return Group(*parts)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
