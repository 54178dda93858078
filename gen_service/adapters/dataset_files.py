"""Writing an exported dataset's files: JSON Lines, or Parquet with the ``[parquet]`` extra.

Each file is written under a temporary name beside its final one and renamed into place when
the export succeeds, so an export that fails leaves no half-written file under a real name and
an earlier export's file stays whole until its replacement is complete. Rows are written as
they come (Parquet in row groups of :data:`PARQUET_ROWS`), never held for a whole split.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Literal, Protocol

from gen_service.domain.dataset_card import Column, ColumnType, ListOf, Scalar
from gen_service.errors import EXIT_IOERR, EXIT_UNAVAILABLE, GenServiceError

FileFormat = Literal["jsonl", "parquet"]
PARQUET_ROWS = 1000
_PARTIAL = ".partial"


class ParquetUnavailable(GenServiceError):
    """Parquet output needs pyarrow, which the ``[parquet]`` extra installs."""

    exit_code = EXIT_UNAVAILABLE


class OutputError(GenServiceError):
    """The export's folder or one of its files cannot be written."""

    exit_code = EXIT_IOERR


def require_parquet() -> None:
    """ParquetUnavailable, with the fix, unless pyarrow can be imported."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ParquetUnavailable(
            "--format parquet needs pyarrow, which is not installed. Fix: "
            "pip install 'gen-service[parquet]' (or use --format jsonl)."
        ) from None


class RowFile(Protocol):
    path: Path

    def write(self, row: dict[str, Any]) -> None: ...

    def commit(self) -> None:
        """Finish the file and move it to its final name."""

    def discard(self) -> None:
        """Remove the unfinished file."""


def open_row_file(path: Path, fmt: FileFormat, columns: tuple[Column, ...]) -> RowFile:
    """A file for one split's rows at ``path`` (created with its folders)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            return JsonlFile(path)
        return ParquetFile(path, columns)
    except OSError as exc:
        raise output_error(path, exc) from None


def output_error(path: Path, exc: OSError) -> OutputError:
    return OutputError(
        f"cannot write {path}: {exc.strerror or exc}. Fix: choose an --out folder you can "
        "write to, on a filesystem with free space."
    )


class JsonlFile:
    """One JSON object per line, UTF-8, keys in column order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial = path.with_name(path.name + _PARTIAL)
        self._file = self._partial.open("w", encoding="utf-8", newline="\n")

    def write(self, row: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise output_error(self.path, exc) from None

    def commit(self) -> None:
        try:
            self._file.close()
            os.replace(self._partial, self.path)
        except OSError as exc:
            raise output_error(self.path, exc) from None

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(OSError):
            self._partial.unlink()


def arrow_type(kind: ColumnType) -> Any:
    import pyarrow as pa

    if isinstance(kind, Scalar):
        return {
            "string": pa.string(),
            "int64": pa.int64(),
            "float64": pa.float64(),
            "bool": pa.bool_(),
        }[kind.dtype]
    if isinstance(kind, ListOf):
        return pa.list_(arrow_type(kind.item))
    return pa.struct([pa.field(c.name, arrow_type(c.type)) for c in kind.fields])


def arrow_schema(columns: tuple[Column, ...]) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(c.name, arrow_type(c.type)) for c in columns])


class ParquetFile:
    """Parquet with the declared schema (so an empty split still has its columns)."""

    def __init__(self, path: Path, columns: tuple[Column, ...]) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._partial = path.with_name(path.name + _PARTIAL)
        self._schema = arrow_schema(columns)
        self._writer = pq.ParquetWriter(str(self._partial), self._schema)
        self._rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._rows:
            return
        table = pa.Table.from_pylist(self._rows, schema=self._schema)
        self._rows = []
        try:
            self._writer.write_table(table)
        except OSError as exc:
            raise output_error(self.path, exc) from None

    def commit(self) -> None:
        self._flush()
        try:
            self._writer.close()
            os.replace(self._partial, self.path)
        except OSError as exc:
            raise output_error(self.path, exc) from None

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(OSError):
            self._partial.unlink()


def write_text(path: Path, text: str) -> None:
    """Write a small text file (the card, the manifest) under a temporary name, then rename."""
    partial = path.with_name(path.name + _PARTIAL)
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise output_error(path, exc) from None
