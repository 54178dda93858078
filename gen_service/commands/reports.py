"""``gen-service plan``, ``report`` and ``export``: what the database holds and will hold, as a
plan, a daily report or a dataset."""

from __future__ import annotations

import argparse
import datetime as dt
import sys


def cmd_plan(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gen_service.config import find_config, load_config
    from gen_service.service.plan_cmd import run_plan

    cfg = load_config(find_config(args.config), check_prompts=False)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    return run_plan(cfg, db=args.db, now=args.now, as_json=args.json, console=console)


def cmd_report(args: argparse.Namespace) -> int:
    from gen_service.config import find_config, load_config
    from gen_service.service.report_cmd import run_report

    cfg = load_config(find_config(args.config), check_prompts=False)
    return run_report(cfg, day=args.day, fmt=args.format, out=args.out, now=dt.datetime.now(dt.UTC))


def cmd_export(args: argparse.Namespace) -> int:
    from gen_service.service.export_cmd import export_command, parse_options

    options = parse_options(
        out=args.out,
        fmt=args.format,
        splits=args.splits,
        min_quality=args.min_quality,
        include_unjudged=args.include_unjudged,
        include_test_data=args.include_test_data,
        types=args.types,
        balance=args.balance,
        chat=args.chat,
        force=args.force,
    )
    config_path = None
    if args.db is not None:
        db = args.db
        if args.config is not None:  # recorded (path and sha256) in the card, not needed
            from gen_service.config import find_config

            config_path = find_config(args.config)
    else:
        from gen_service.config import find_config, load_config

        config_path = find_config(args.config)
        db = load_config(config_path, check_prompts=False).service.db
    return export_command(db, options, config_path=config_path)
