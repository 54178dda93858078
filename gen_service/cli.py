"""The ``gen-service`` command line: :func:`main` and the argument parser.

The commands' bodies live in :mod:`gen_service.commands`, one module per family, and import
what they need inside the command, so a command loads only what it uses (``status --json``
answers within 200 ms as a whole process, SPEC §9.5).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from gen_service import __version__
from gen_service.commands import configure, doctor, fake_ollama, judge, reports, run, status
from gen_service.commands.run import report_failure
from gen_service.errors import EXIT_OK, EXIT_USAGE, GenServiceError

__all__ = ["main", "report_failure"]


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
    p.set_defaults(func=run.cmd_run)

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
    p.set_defaults(func=status.cmd_status)

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
    p.set_defaults(func=reports.cmd_plan)

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
    p.set_defaults(func=reports.cmd_report)

    p = sub.add_parser("validate", help="judge the batches that wait for a verdict, then exit")
    config_arg(p)
    p.set_defaults(func=judge.cmd_validate)

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
    p.set_defaults(func=judge.cmd_review)

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
        "--include-test-data",
        action="store_true",
        help="also export samples generated by a test double (the fake Ollama), for dry runs "
        "and tests; the dataset card then says they are not real data",
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
    p.set_defaults(func=reports.cmd_export)

    p = sub.add_parser("doctor", help="check config, database, backend, models and VRAM fit")
    config_arg(p)
    p.set_defaults(func=doctor.cmd_doctor)

    p = sub.add_parser("models", help="pull or list the configured models")
    config_arg(p)
    models_sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    models_sub.add_parser("pull", help="pull every configured model (Ollama), with progress")
    models_sub.add_parser("list", help="the configured models: size, residency, GPU share")
    p.set_defaults(func=doctor.cmd_models)

    p = sub.add_parser("check-config", help="validate a config file: prints ok or the problem")
    p.add_argument("path", type=Path)
    p.set_defaults(func=configure.cmd_check_config)

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
    p.set_defaults(func=configure.cmd_init)

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
    p.set_defaults(func=fake_ollama.cmd_fake_ollama)
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


def _day(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day; write it as YYYY-MM-DD") from None
