"""``gen-service validate`` and ``gen-service review``: judge the batches that wait for a
verdict now, and decide the flagged ones by hand."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Literal

from gen_service.commands._loop import run_async
from gen_service.errors import EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from gen_service.adapters.factory import open_backend
    from gen_service.config import find_config, load_config
    from gen_service.logs import configure_logging
    from gen_service.service.judge import validate_now

    cfg = load_config(find_config(args.config))
    configure_logging(cfg.service.log_format, cfg.service.log_level)

    async def validate() -> int:
        async with open_backend(cfg) as backend:
            result = await validate_now(cfg, backend)
        mean = sum(result.means) / len(result.means) if result.means else None
        print(
            f"judged {result.samples} samples in {result.batches} batches; "
            f"{result.flagged} flagged"
            + (f"; mean overall {mean:.2f}" if mean is not None else "")
            + (f"; {result.failed} could not be judged (see the log)" if result.failed else "")
        )
        return EXIT_OK

    return run_async(validate)


def cmd_review(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gen_service.adapters.store.review import open_for_review
    from gen_service.service.review_cmd import render_decision, render_list, render_show

    if args.db is not None:
        db = args.db
    else:
        from gen_service.config import find_config, load_config

        db = load_config(find_config(args.config), check_prompts=False).service.db
    console = Console() if sys.stdout.isatty() else Console(width=120)
    conn = open_for_review(db)
    try:
        action = args.review_command or "list"
        if action == "list":
            return render_list(conn, console, include_reviewed=getattr(args, "all", False))
        if action == "show":
            return render_show(conn, args.batch_id, console, as_json=args.json)
        decision: Literal["accepted", "rejected"] = "accepted" if action == "accept" else "rejected"
        now = dt.datetime.now(dt.UTC)
        return render_decision(conn, args.batch_id, decision, args.note, console, now)
    finally:
        conn.close()
