"""The ``gen-service`` command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gen_service import __version__
from gen_service.errors import EXIT_OK, EXIT_USAGE, GenServiceError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage; keep sysexits' EX_USAGE
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except GenServiceError as exc:
        print(f"gen-service: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gen-service",
        description="Generate structured character-psychology training data with local LLMs.",
    )
    parser.add_argument("--version", action="version", version=f"gen-service {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            default=None,
            help="config file (default: ./gen-service.toml, /etc/gen-service/gen-service.toml)",
        )

    p = sub.add_parser("run", help="run the service (foreground; systemd runs this)")
    config_arg(p)
    p.add_argument(
        "--until-done",
        action="store_true",
        help="exit 0 once every total target is met (default: run until stopped)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("status", help="progress per data type, from the database")
    config_arg(p)
    p.add_argument("--json", action="store_true", help="print the dashboard as JSON")
    p.add_argument("--db", type=Path, default=None, help="read this database (no config needed)")
    p.add_argument(
        "--watch",
        action="store_true",
        help="refresh every --interval seconds until Ctrl-C (exit 0); with --json, one JSON "
        "object per refresh, one per line",
    )
    p.add_argument(
        "--interval",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="seconds between refreshes with --watch (default 2)",
    )
    p.add_argument(
        "--count",
        type=_positive_count,
        default=None,
        metavar="N",
        help="with --watch: stop after N refreshes (for scripts)",
    )
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("plan", help="what the schedule will produce: shortfalls, VRAM, dates")
    config_arg(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--now",
        type=_iso_datetime,
        default=None,
        help="plan from this moment, ISO 8601 (default: now; without an offset: the "
        "service's time zone)",
    )
    p.add_argument("--db", type=Path, default=None, help="take history from this database")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("report", help="the daily production report: text, JSON or HTML")
    config_arg(p)
    p.add_argument(
        "--day",
        type=_day,
        default=None,
        help="the local day YYYY-MM-DD (default: today in [service].timezone)",
    )
    p.add_argument(
        "--format", choices=("text", "json", "html"), default="text", help="(default: text)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write it to this file (default: text and json to stdout, html to "
        "[service].reports_dir/DAY.html)",
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("validate", help="judge the batches that wait for a verdict, then exit")
    config_arg(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("review", help="flagged batches: list, show, accept or reject (stage 3)")
    config_arg(p)
    p.add_argument("--db", type=Path, default=None, help="use this database (no config needed)")
    review = p.add_subparsers(dest="review_command", metavar="ACTION")
    r = review.add_parser("list", help="flagged batches waiting for a decision (the default)")
    r.add_argument("--all", action="store_true", help="also the ones already decided")
    r = review.add_parser("show", help="a batch: its briefs, samples and judgments")
    r.add_argument("batch_id", type=int)
    r.add_argument("--json", action="store_true", help="print it as JSON")
    for action in ("accept", "reject"):
        r = review.add_parser(action, help=f"{action} a flagged batch")
        r.add_argument("batch_id", type=int)
        r.add_argument("--note", default=None, help="why, stored with the decision")
    p.set_defaults(func=_cmd_review)

    p = sub.add_parser(
        "export",
        help="write the accepted samples as a train/validation/test dataset (JSONL or Parquet)",
        description="Write DIR/<type>/{train,validation,test}.jsonl (or .parquet), a dataset "
        "card (DIR/README.md, which Hugging Face datasets reads: load_dataset(DIR, TYPE)) and "
        "DIR/manifest.json. Exported: accepted samples of batches the judge passed, or flagged "
        "and then accepted in review; never rejected, duplicate or flagged-unreviewed ones. A "
        "sample's split follows its near-duplicate cluster alone, so near-copies never "
        "straddle splits and re-exports keep every sample in its split.",
    )
    config_arg(p)
    p.add_argument("--db", type=Path, default=None, help="read this database (no config needed)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the dataset folder")
    p.add_argument(
        "--format",
        choices=("jsonl", "parquet"),
        default="jsonl",
        help="file format (parquet needs the [parquet] extra; default jsonl)",
    )
    p.add_argument(
        "--splits",
        default=None,
        metavar="TRAIN,VAL,TEST",
        help="shares of train, validation and test, summing to 1 (default 0.8,0.1,0.1)",
    )
    p.add_argument(
        "--min-quality",
        default=None,
        metavar="X",
        help="only batches whose judged mean is at least X (0..1); applies to every judged "
        "batch, reviewed ones included, and not to unjudged ones (--include-unjudged)",
    )
    p.add_argument(
        "--include-unjudged",
        action="store_true",
        help="also export accepted samples of batches the judge has not scored yet; "
        "--min-quality does not apply to them (they have no judged mean)",
    )
    p.add_argument(
        "--types",
        default=None,
        metavar="TYPE[,TYPE...]",
        help="only these data types (default: every type the database has samples of)",
    )
    p.add_argument(
        "--balance",
        action="store_true",
        help="export as many samples of each type as the smallest type has (a fixed "
        "pseudo-random choice by sample id)",
    )
    p.add_argument(
        "--chat",
        action="store_true",
        help="also write DIR/<type>/chat/: system/user/assistant messages per sample (TRL)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty DIR, overwriting only the files this export writes",
    )
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("doctor", help="check config, database, backend, models and VRAM fit")
    config_arg(p)
    p.set_defaults(func=_cmd_doctor)

    p = sub.add_parser("models", help="pull or list the configured models")
    config_arg(p)
    models_sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    models_sub.add_parser("pull", help="pull every configured model (Ollama), with progress")
    models_sub.add_parser("list", help="the configured models: size, residency, GPU share")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("check-config", help="validate a config file: prints ok or the problem")
    p.add_argument("path", type=Path)
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("init", help="write a documented starter config")
    p.add_argument(
        "path",
        type=Path,
        nargs="?",
        default=Path("gen-service.toml"),
        help="where to write it (default: ./gen-service.toml)",
    )
    p.add_argument(
        "--backend",
        choices=("ollama", "embedded"),
        default="ollama",
        help="ollama: Qwen3 on a local Ollama (the memo's strategy); embedded: the tiny "
        "SmolLM2 model in-process, no GPU (default: ollama)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_cmd_init)

    def probability(text: str) -> float:
        value = float(text)
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
        return value

    p = sub.add_parser("fake-ollama", help="serve a fake Ollama (a test double) for dry runs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11434)
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiplies simulated durations; 0 answers at once (default 1)",
    )
    p.add_argument("--tokens-per-s", type=float, default=40.0)
    p.add_argument("--vram-gb", type=float, default=12.0)
    p.add_argument("--num-parallel", type=int, default=4)
    p.add_argument(
        "--fault-rate",
        type=probability,
        default=0.0,
        help="probability of each injected fault per request (default 0)",
    )
    p.add_argument(
        "--judge-low-share",
        type=probability,
        default=0.0,
        help="share of judge verdicts whose four dimensions are low, 0.30-0.65 (default 0)",
    )
    p.add_argument(
        "--judge-disagree-share",
        type=probability,
        default=0.0,
        help="share of judge verdicts whose blind labels disagree with the sample (default 0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_fake_ollama)
    return parser


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0, e.g. 2")
    return value


def _positive_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _iso_datetime(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date and time, e.g. 2026-03-01T09:00"
        ) from None


# -- commands --------------------------------------------------------------------------------


def _cmd_check_config(args: argparse.Namespace) -> int:
    from gen_service.adapters.prompt_files import load_prompt_library
    from gen_service.config import config_warnings, load_config
    from gen_service.service.fit_check import batch_fit_warnings

    cfg = load_config(args.path)
    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    for warning in [*config_warnings(cfg), *batch_fit_warnings(cfg, library)]:
        print(f"warning: {args.path}: {warning}", file=sys.stderr)
    print("ok")
    return EXIT_OK


def _cmd_init(args: argparse.Namespace) -> int:
    from gen_service.starter import write_starter

    path = write_starter(args.path, args.backend, force=args.force)
    print(f"wrote {path} ({args.backend} backend)")
    print(f"check it:  gen-service check-config {path}")
    print(f"run it:    gen-service run --config {path}")
    return EXIT_OK


def _run_async(fn: Callable[[], Awaitable[int]]) -> int:
    import anyio

    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": _uvloop_available()})


def _cmd_doctor(args: argparse.Namespace) -> int:
    from gen_service.adapters.factory import open_backend
    from gen_service.config import find_config, load_config
    from gen_service.logs import configure_logging
    from gen_service.service.doctor import exit_code, render_checks, run_doctor

    cfg = load_config(find_config(args.config))
    configure_logging("console", "error")

    async def doctor() -> int:
        async with open_backend(cfg) as backend:
            checks = await run_doctor(cfg, backend)
        print(render_checks(checks))
        return exit_code(checks)

    return _run_async(doctor)


def _cmd_plan(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gen_service.config import find_config, load_config
    from gen_service.service.plan_cmd import run_plan

    cfg = load_config(find_config(args.config), check_prompts=False)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    return run_plan(cfg, db=args.db, now=args.now, as_json=args.json, console=console)


def _cmd_validate(args: argparse.Namespace) -> int:
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

    return _run_async(validate)


def _day(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day; write it as YYYY-MM-DD") from None


def _cmd_report(args: argparse.Namespace) -> int:
    from gen_service.config import find_config, load_config
    from gen_service.service.report_cmd import run_report

    cfg = load_config(find_config(args.config), check_prompts=False)
    return run_report(cfg, day=args.day, fmt=args.format, out=args.out, now=dt.datetime.now(dt.UTC))


def _cmd_review(args: argparse.Namespace) -> int:
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


def _cmd_models(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gen_service.adapters.factory import open_backend
    from gen_service.config import find_config, load_config
    from gen_service.logs import configure_logging
    from gen_service.service.models_cmd import list_models, pull_models, render_models

    cfg = load_config(find_config(args.config), check_prompts=False)
    configure_logging("console", "error")
    console = Console()

    async def models() -> int:
        async with open_backend(cfg) as backend:
            if args.models_command == "pull":
                return await pull_models(cfg, backend, console)
            render_models(await list_models(cfg, backend), console)
            return EXIT_OK

    return _run_async(models)


def _cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from gen_service.config import find_config, load_config
    from gen_service.logs import configure_logging
    from gen_service.service.supervisor import run_service

    cfg = load_config(find_config(args.config))
    configure_logging(cfg.service.log_format, cfg.service.log_level)
    try:
        outcome = anyio.run(
            lambda: run_service(cfg, until_done=args.until_done),
            backend="asyncio",
            backend_options={"use_uvloop": _uvloop_available()},
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return report_failure(exc)
    return outcome.exit_code


def report_failure(exc: BaseException) -> int:
    """Log the error that ended a run as ONE event and return its exit code: a known error
    with its message (which says the fix), an unknown one with its traceback, once. The
    follow-on errors of the other tasks are not reported."""
    import structlog

    from gen_service.errors import EXIT_SOFTWARE, primary_error

    log = structlog.get_logger("gen_service")
    cause = primary_error(exc)
    if isinstance(cause, GenServiceError):
        log.error(
            "service.failed",
            error=str(cause),
            error_type=type(cause).__name__,
            exit_code=cause.exit_code,
        )
        return cause.exit_code
    log.error(
        "service.crashed",
        error=f"{type(cause).__name__}: {cause}",
        exit_code=EXIT_SOFTWARE,
        exc_info=cause,
    )
    return EXIT_SOFTWARE


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _cmd_status(args: argparse.Namespace) -> int:
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


def _cmd_export(args: argparse.Namespace) -> int:
    from gen_service.service.export_cmd import export_command, parse_options

    options = parse_options(
        out=args.out,
        fmt=args.format,
        splits=args.splits,
        min_quality=args.min_quality,
        include_unjudged=args.include_unjudged,
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


def _cmd_fake_ollama(args: argparse.Namespace) -> int:
    from gen_service.testing.fake_ollama import (
        FakeConfig,
        FaultRates,
        JudgeBehaviour,
        serve_forever,
    )

    config = FakeConfig(
        vram_bytes=int(args.vram_gb * 2**30),
        num_parallel=args.num_parallel,
        tokens_per_s=args.tokens_per_s,
        time_scale=args.time_scale,
        faults=FaultRates.uniform(args.fault_rate),
        seed=args.seed,
        judge=JudgeBehaviour(
            low_quality_share=args.judge_low_share,
            label_disagreement_share=args.judge_disagree_share,
        ),
    )
    print("fake Ollama: a test double; what it generates is not real data", file=sys.stderr)
    serve_forever(config, args.host, args.port)
    return EXIT_OK
