"""``gen-service export``: the accepted samples as a train/validation/test dataset.

One read snapshot of the database (adapters/store/export.py) is streamed type by type into one
file per split (adapters/dataset_files.py), with a chat/SFT rendering beside it on request
(domain/chat_format.py); each row's split comes from its near-duplicate cluster alone
(domain/splits.py). A dataset card (README.md) with the YAML header that Hugging Face
``datasets`` reads, and manifest.json with the same figures, finish the folder
(domain/dataset_card.py). Files appear under their real names only once all of them are
written, and nothing else in the folder is touched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import math
import shlex
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import gen_service
from gen_service.adapters.dataset_files import (
    FileFormat,
    OutputError,
    RowFile,
    open_row_file,
    output_error,
    require_parquet,
    write_text,
)
from gen_service.adapters.store.export import (
    ExportFilter,
    ExportRow,
    count_exportable,
    count_test_data,
    datatypes_with_samples,
    iter_exportable,
    models_of,
    open_snapshot,
)
from gen_service.domain.chat_format import LAYOUTS, chat_examples, chat_row
from gen_service.domain.dataset_card import (
    CHAT_COLUMNS,
    OPTION_COLUMN,
    PROVENANCE,
    Column,
    DatasetConfig,
    columns_from_schema,
    dataset_row,
    distinct_n,
    render_card,
)
from gen_service.domain.datatypes import REGISTRY, DataTypeSpec
from gen_service.domain.judging import DIMENSIONS
from gen_service.domain.splits import (
    DEFAULT_RATIOS,
    SPLITS,
    Split,
    SplitRatios,
    cluster_key,
    selection_rank,
    split_of,
)
from gen_service.errors import EXIT_OK, EXIT_USAGE, GenServiceError

# How many rows of each type the distinct-2 figure reads (the same number for every type, so
# the figures compare; chosen by a fixed pseudo-random order, so they are not the oldest).
DIVERSITY_ROWS = 1000


class ExportOptionError(GenServiceError):
    """An export option is wrong: exit 64 with what, where and the fix."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class ExportOptions:
    out: Path
    fmt: FileFormat = "jsonl"
    ratios: SplitRatios = DEFAULT_RATIOS
    min_quality: float | None = None
    include_unjudged: bool = False
    types: tuple[str, ...] | None = None  # None: every type the database has samples of
    balance: bool = False
    chat: bool = False
    force: bool = False
    include_test_data: bool = False

    @property
    def filter(self) -> ExportFilter:
        return ExportFilter(self.min_quality, self.include_unjudged, self.include_test_data)


def parse_options(
    *,
    out: Path,
    fmt: str = "jsonl",
    splits: str | None = None,
    min_quality: str | None = None,
    include_unjudged: bool = False,
    types: str | None = None,
    balance: bool = False,
    chat: bool = False,
    force: bool = False,
    include_test_data: bool = False,
) -> ExportOptions:
    """Options from the command line's text; ExportOptionError saying the fix otherwise."""
    ratios = DEFAULT_RATIOS
    if splits is not None:
        try:
            ratios = SplitRatios.parse(splits)
        except ValueError as exc:
            raise ExportOptionError(
                f"--splits {splits}: {exc}. Fix: give three non-negative shares for train, "
                "validation and test that sum to 1, e.g. --splits 0.8,0.1,0.1."
            ) from None
    quality = None
    if min_quality is not None:
        try:
            quality = float(min_quality)
        except ValueError:
            quality = math.nan
        if not 0 <= quality <= 1:
            raise ExportOptionError(
                f"--min-quality {min_quality}: a judged mean is between 0 and 1. Fix: give a "
                "number in [0, 1], e.g. --min-quality 0.75."
            )
    chosen = None
    if types is not None:
        chosen = tuple(dict.fromkeys(t.strip() for t in types.split(",") if t.strip()))
        unknown = [t for t in chosen if t not in REGISTRY]
        if unknown or not chosen:
            raise ExportOptionError(
                f"--types {types}: unknown data type {', '.join(unknown) or '(none given)'}. "
                f"Fix: a comma-separated list of {', '.join(REGISTRY)}."
            )
    if fmt not in ("jsonl", "parquet"):
        raise ExportOptionError(f"--format {fmt}: Fix: use jsonl or parquet.")
    return ExportOptions(
        out=out,
        fmt="parquet" if fmt == "parquet" else "jsonl",
        ratios=ratios,
        min_quality=quality,
        include_unjudged=include_unjudged,
        types=chosen,
        balance=balance,
        chat=chat,
        force=force,
        include_test_data=include_test_data,
    )


def check_out(options: ExportOptions) -> None:
    """Refuse an --out that is a file, or a non-empty folder without --force."""
    out = options.out
    if out.exists() and not out.is_dir():
        raise ExportOptionError(
            f"--out {out} is a file, not a folder. Fix: name a new or empty folder."
        )
    if out.is_dir() and not options.force:
        try:
            occupied = next(out.iterdir(), None) is not None
        except OSError as exc:
            raise OutputError(f"cannot read the folder {out}: {exc.strerror}.") from None
        if occupied:
            raise ExportOptionError(
                f"--out {out} exists and is not empty. Fix: name a new or empty folder, or add "
                "--force to overwrite the files this export writes there (README.md, "
                "manifest.json, <type>/...); nothing else in it is touched."
            )


def command_line(options: ExportOptions) -> str:
    """The options as a command line, for the card's provenance."""
    parts = ["gen-service", "export", "--out", str(options.out), "--format", options.fmt]
    r = options.ratios
    parts += ["--splits", f"{r.train:g},{r.validation:g},{r.test:g}"]
    if options.min_quality is not None:
        parts += ["--min-quality", f"{options.min_quality:g}"]
    if options.include_unjudged:
        parts.append("--include-unjudged")
    if options.include_test_data:
        parts.append("--include-test-data")
    if options.types is not None:
        parts += ["--types", ",".join(options.types)]
    parts += [flag for flag, on in (("--balance", options.balance), ("--chat", options.chat)) if on]
    return shlex.join(parts)


# -- the export -----------------------------------------------------------------------------


@dataclass(slots=True)
class _TypeTally:
    """What one type's export counted, summed as rows stream past."""

    rows: dict[Split, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    chat_rows: dict[Split, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    clusters: set[int] = field(default_factory=set)
    skipped_invalid: int = 0
    judged: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    agreement: list[float] = field(default_factory=lambda: [0.0, 0.0])  # sum, count
    # The DIVERSITY_ROWS rows of lowest rank, as a max-heap of (-rank, text).
    diversity: list[tuple[int, str]] = field(default_factory=list)

    def add_judgment(self, row: ExportRow) -> None:
        j = row.judgment
        if j is None:
            return
        self.judged += 1
        for name in ("overall", *DIMENSIONS):
            self.sums[name] = self.sums.get(name, 0.0) + float(getattr(j, name))
        if j.label_agreement is not None:
            self.agreement[0] += j.label_agreement
            self.agreement[1] += 1

    def add_text(self, sample_id: int, text: str) -> None:
        rank = selection_rank(sample_id, "diversity")
        if len(self.diversity) < DIVERSITY_ROWS:
            heapq.heappush(self.diversity, (-rank, text))
        elif rank < -self.diversity[0][0]:
            heapq.heapreplace(self.diversity, (-rank, text))

    def quality(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"judged_samples": self.judged}
        for name in ("overall", *DIMENSIONS):
            figures[name] = round(self.sums[name] / self.judged, 4) if self.judged else None
        total, n = self.agreement
        figures["label_agreement"] = round(total / n, 4) if n else None
        return figures


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def run_export(
    db: Path,
    options: ExportOptions,
    *,
    config_path: Path | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Write the dataset to ``options.out``; returns its manifest (also in manifest.json)."""
    if options.fmt == "parquet":
        require_parquet()
    check_out(options)
    now = now or dt.datetime.now(dt.UTC)
    conn = open_snapshot(db)
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        conn.close()
        raise output_error(options.out, exc) from None
    written: list[RowFile] = []
    try:
        present = datatypes_with_samples(conn)
        types = options.types or tuple(t for t in REGISTRY if t in present)
        flt = options.filter
        available = {t: count_exportable(conn, t, flt) for t in types}
        keep = min(available.values(), default=0) if options.balance else None
        out = options.out
        ext = options.fmt
        configs: list[DatasetConfig] = []
        chat_configs: list[DatasetConfig] = []
        fields: dict[str, tuple[Column, ...]] = {}
        report: dict[str, Any] = {}
        for name in types:
            spec = REGISTRY[name]
            fields[name] = columns_from_schema(spec.model.model_json_schema(mode="serialization"))
            columns = fields[name] + PROVENANCE
            chat_columns = CHAT_COLUMNS + ((OPTION_COLUMN,) if name == "dramatic_irony" else ())
            paths = {s: out / name / f"{s}.{ext}" for s in SPLITS}
            files = {s: open_row_file(p, options.fmt, columns) for s, p in paths.items()}
            written += files.values()
            chat_paths = {s: out / name / "chat" / f"{s}.{ext}" for s in SPLITS}
            chat_files: dict[Split, RowFile] = {}
            if options.chat:
                chat_files = {
                    s: open_row_file(p, options.fmt, chat_columns) for s, p in chat_paths.items()
                }
                written += chat_files.values()
            limit = keep if keep is not None and available[name] > keep else None
            tally = _export_type(
                spec, iter_exportable(conn, name, flt, limit=limit), options, files, chat_files
            )
            total = sum(tally.rows.values())
            info: dict[str, Any] = {
                "available": available[name],
                # include_test_data: how many of them are test data; else how many were left out
                "test_data": count_test_data(conn, name, flt),
                "total": total,
                "rows": dict(tally.rows),
                "clusters": len(tally.clusters),
                "skipped_invalid": tally.skipped_invalid,
                "files": {s: _relative(p, out) for s, p in paths.items()},
                "models": models_of(conn, name, flt),
                "quality": tally.quality(),
                "diversity": {
                    "distinct_2": _rounded(distinct_n(text for _, text in tally.diversity)),
                    "samples": len(tally.diversity),
                },
            }
            present_splits = {s: _relative(paths[s], out) for s in SPLITS if tally.rows[s]}
            if present_splits:
                configs.append(DatasetConfig(name, present_splits, columns))
            if options.chat:
                info["chat_rows"] = dict(tally.chat_rows)
                info["chat_files"] = {s: _relative(p, out) for s, p in chat_paths.items()}
                chat_splits = {
                    s: _relative(chat_paths[s], out) for s in SPLITS if tally.chat_rows[s]
                }
                if chat_splits:
                    chat_configs.append(DatasetConfig(f"{name}_chat", chat_splits, chat_columns))
            report[name] = info
        manifest = _manifest(db, options, config_path, now, report)
        card = render_card(manifest, configs + chat_configs, fields=fields, chat_layouts=LAYOUTS)
        for file in written:
            file.commit()
        write_text(out / "README.md", card)
        write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        return manifest
    except BaseException:
        for file in written:
            file.discard()
        raise
    finally:
        conn.close()


def _export_type(
    spec: DataTypeSpec,
    rows: Iterable[ExportRow],
    options: ExportOptions,
    files: dict[Split, RowFile],
    chat_files: dict[Split, RowFile],
) -> _TypeTally:
    tally = _TypeTally()
    for row in rows:
        try:
            sample = spec.model.model_validate_json(row.payload)
        except ValidationError:
            # Stored under an older version of the type's model: its columns would not match
            # the declared features. Counted, and said in the card.
            tally.skipped_invalid += 1
            continue
        key = cluster_key(row.cluster_id, row.id)
        split = split_of(key, options.ratios)
        provenance = {
            "id": row.id,
            "batch_id": row.batch_id,
            "cluster_id": key,
            "model": row.model,
            "created_at": row.created_at,
            "brief": row.brief,
            "judged": row.judged,
            "quality": row.quality,
            "reviewed": row.reviewed,
        }
        files[split].write(dataset_row(sample.model_dump(mode="json"), provenance))
        tally.rows[split] += 1
        tally.clusters.add(key)
        tally.add_judgment(row)
        tally.add_text(row.id, spec.text_for_dedup(sample))
        if options.chat:
            for example in chat_examples(spec.name, sample):
                chat_files[split].write(chat_row(example, row.id))
                tally.chat_rows[split] += 1
    return tally


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _manifest(
    db: Path,
    options: ExportOptions,
    config_path: Path | None,
    now: dt.datetime,
    datatypes: dict[str, Any],
) -> dict[str, Any]:
    config = None
    if config_path is not None:
        try:
            digest = hashlib.sha256(config_path.read_bytes()).hexdigest()
        except OSError:
            digest = None
        config = {"path": str(config_path.resolve()), "sha256": digest}
    return {
        "gen_service_version": gen_service.__version__,
        "git_revision": git_revision(),
        "exported_at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "database": str(db.resolve()),
        "config": config,
        "command": command_line(options),
        "options": {
            "format": options.fmt,
            "splits": options.ratios.shares(),
            "min_quality": options.min_quality,
            "include_unjudged": options.include_unjudged,
            "include_test_data": options.include_test_data,
            "types": list(datatypes),
            "balance": options.balance,
            "chat": options.chat,
        },
        "datatypes": datatypes,
    }


def git_revision() -> str | None:
    """The commit of the gen-service checkout this code runs from (``-dirty`` when tracked
    files changed); None when it is not running from a git checkout."""
    package = Path(gen_service.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    # An installed copy inside some other repository (a venv in a checkout) is not a checkout.
    if top is None or Path(top).resolve() / package.name != package:
        return None
    revision = git("rev-parse", "HEAD")
    if revision is None:
        return None
    changed = git("status", "--porcelain", "--untracked-files=no")
    return revision + ("-dirty" if changed else "")


def render_summary(manifest: dict[str, Any], out: Path) -> str:
    """What the command prints: rows per type and split, and how to load them."""
    types: dict[str, Any] = manifest["datatypes"]
    chat = manifest["options"]["chat"]
    total = sum(i["total"] for i in types.values())
    lines = [
        f"exported {total:,} samples of {len(types)} data types to {out} "
        f"({manifest['options']['format']})"
    ]
    width = max((len(n) for n in types), default=0)
    for name, info in types.items():
        counts = "  ".join(f"{s} {info['rows'][s]:,}" for s in SPLITS)
        extra = f"  (chat rows {sum(info['chat_rows'].values()):,})" if chat else ""
        lines.append(f"  {name:<{width}}  {counts}{extra}")
    first = next((n for n, i in types.items() if i["total"]), None)
    if first is not None:
        lines.append(f'load it: datasets.load_dataset("{out}", "{first}")')
    return "\n".join(lines)


def warnings(manifest: dict[str, Any]) -> list[str]:
    """What the user should know about this export (printed to stderr)."""
    found: list[str] = []
    types: dict[str, Any] = manifest["datatypes"]
    if not types:
        found.append(
            f"the database {manifest['database']} has no samples yet. Fix: run the service "
            "(gen-service run) first, or point --db / [service].db at the right database."
        )
    if manifest["options"]["balance"]:
        empty = [n for n, i in types.items() if i["available"] == 0]
        if empty:
            found.append(
                f"--balance: {', '.join(empty)} has no exportable samples, so every type "
                "exports 0. Fix: leave it out with --types."
            )
    test_data = sum(i["test_data"] for i in types.values())
    if test_data and not manifest["options"]["include_test_data"]:
        found.append(
            f"{test_data:,} samples were left out: they were generated by a test double (the "
            "fake Ollama), so they are not real data. Fix: run against a real backend; for a "
            "dry run or a test, add --include-test-data."
        )
    elif test_data:
        found.append(
            f"--include-test-data: {test_data:,} exported samples come from a test double (the "
            "fake Ollama); the dataset card says so. Do not train on them."
        )
    for name, info in types.items():
        if info["skipped_invalid"]:
            found.append(
                f"{name}: {info['skipped_invalid']:,} accepted samples no longer validate "
                "against the data type's model and were left out."
            )
        if not info["available"] and not info["test_data"]:
            found.append(
                f"{name}: nothing to export (no accepted samples of judged batches"
                + ("" if manifest["options"]["include_unjudged"] else "; see --include-unjudged")
                + ")."
            )
    return found


def export_command(db: Path, options: ExportOptions, *, config_path: Path | None) -> int:
    """Run the export and print its summary; errors propagate as GenServiceError."""
    manifest = run_export(db, options, config_path=config_path)
    for warning in warnings(manifest):
        print(f"gen-service: warning: {warning}", file=sys.stderr)
    print(render_summary(manifest, options.out))
    return EXIT_OK
