"""``gen-service report`` and the report half of the process phase: read one local day from the
database (read-only, so it works while the service writes), build the figures, render them as
text, JSON or one self-contained HTML page, and write them.

Synchronous on purpose: the process phase runs :func:`write_day_reports` in a worker thread
(``anyio.to_thread.run_sync``), so the SQLite reads and the file writes never block the event
loop that keeps generating."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Literal

from gen_service.adapters.store import open_readonly
from gen_service.adapters.store.report import read_report_rows
from gen_service.config import Config
from gen_service.domain.report import Report, Target, build_report, report_json
from gen_service.domain.report_html import render_html
from gen_service.domain.report_text import render_text
from gen_service.errors import EXIT_IOERR, EXIT_OK, GenServiceError
from gen_service.service.board import local_day

Format = Literal["text", "json", "html"]
FORMATS: tuple[Format, ...] = ("text", "json", "html")
SUFFIX: dict[Format, str] = {"text": "txt", "json": "json", "html": "html"}


class ReportWriteError(GenServiceError):
    """A report file cannot be written (exit 74, EX_IOERR)."""

    exit_code = EXIT_IOERR


def gather(cfg: Config, day: str | None, now: dt.datetime) -> Report:
    """The report of ``day`` (default: today in the configured zone) from the database."""
    tz = cfg.service.tzinfo()
    day = day or local_day(tz, now)
    conn = open_readonly(cfg.service.db)
    try:
        rows = read_report_rows(
            conn,
            day=day,
            tz=tz,
            timezone=_zone_name(cfg, now),
            now=now,
            targets={
                name: Target(d.daily_target, d.total_target) for name, d in cfg.datatypes.items()
            },
            flag_below=cfg.validation.flag_below,
            datatypes=list(cfg.datatypes),
        )
    finally:
        conn.close()
    return build_report(rows)


def render(report: Report, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return render_html(report)
    return render_text(report)


def write_file(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all (a reader never sees half a report)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ReportWriteError(
            f"cannot write the report {path}: {exc.strerror or exc}. Fix: make the folder "
            "writable, free space, or point [service].reports_dir (or --out) elsewhere."
        ) from None
    return path


def report_path(cfg: Config, day: str, fmt: Format) -> Path:
    """Where the report of ``day`` goes in the reports folder: ``YYYY-MM-DD.{txt,json,html}``."""
    return cfg.service.reports_path() / f"{day}.{SUFFIX[fmt]}"


def write_day_reports(cfg: Config, day: str | None, now: dt.datetime) -> list[Path]:
    """The report of ``day`` in all three formats, into the reports folder (the process
    phase)."""
    report = gather(cfg, day, now)
    return [write_file(report_path(cfg, report.day, f), render(report, f)) for f in FORMATS]


def run_report(
    cfg: Config, *, day: str | None, fmt: Format, out: Path | None, now: dt.datetime
) -> int:
    """The command: text and JSON to stdout unless ``out`` is given; HTML to ``out`` or to the
    reports folder (it prints where)."""
    report = gather(cfg, day, now)
    text = render(report, fmt)
    if out is None and fmt != "html":
        sys.stdout.write(text)
        return EXIT_OK
    path = write_file(out if out is not None else report_path(cfg, report.day, fmt), text)
    print(f"wrote {path}")
    return EXIT_OK


def _zone_name(cfg: Config, now: dt.datetime) -> str:
    if cfg.service.timezone != "local":
        return cfg.service.timezone
    return f"local ({now.astimezone().tzname()})"
