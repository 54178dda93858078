"""The export's reads: synchronous sqlite3, read-only, safe beside the running service.

Everything one export reads comes from ONE read transaction (a WAL snapshot), so the counts
that decide ``--balance``, the rows and the quality figures agree even while the service keeps
committing. Rows are streamed from a cursor in id order, never loaded as a whole type.

What is exported: accepted samples whose batch the judge passed (judged, not flagged) or
flagged and then accepted in review, optionally with a minimum judged mean; with
``include_unjudged`` also accepted samples of batches not judged yet (not subject to the
minimum). Flagged-unreviewed samples have status ``flagged`` and review-rejected ones
``rejected``; the batch conditions are checked as well, so neither path depends on the other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_service.adapters.store.core import open_readonly
from gen_service.adapters.store.schema import SCHEMA_VERSION
from gen_service.domain.splits import selection_rank
from gen_service.errors import StoreError


@dataclass(frozen=True, slots=True)
class ExportFilter:
    min_quality: float | None = None
    include_unjudged: bool = False
    include_test_data: bool = False  # samples of runs on a test double (the fake Ollama)


@dataclass(frozen=True, slots=True)
class Judgment:
    """The judge's verdict on one exported sample (only a share of samples has one)."""

    overall: float
    authenticity: float
    consistency: float
    complexity: float
    usability: float
    label_agreement: float | None


@dataclass(frozen=True, slots=True)
class ExportRow:
    id: int
    batch_id: int
    cluster_id: int | None
    payload: str  # JSON text
    brief: str | None  # JSON text
    created_at: str
    model: str
    judged: bool
    quality: float | None  # the batch's judged mean
    reviewed: bool  # flagged, then accepted by a person
    judgment: Judgment | None


_RANK_FUNCTION = "gen_service_balance_rank"


def open_snapshot(path: Path) -> sqlite3.Connection:
    """A read-only connection inside one read transaction, on a database whose schema this
    gen-service knows; StoreError (exit 74) with the fix otherwise."""
    conn = open_readonly(path)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            newer = version > SCHEMA_VERSION
            raise StoreError(
                f"database {path} has schema version {version}; this gen-service exports "
                f"version {SCHEMA_VERSION}. Fix: "
                + (
                    "upgrade gen-service."
                    if newer
                    else "start the service once (`gen-service run`), which migrates it."
                )
            )
        conn.create_function(
            _RANK_FUNCTION, 1, lambda sid: selection_rank(int(sid), "balance"), deterministic=True
        )
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM batches").fetchone()  # pins the snapshot now
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(
            f"cannot read the database {path}: {exc}. Fix: check it is a gen-service database "
            "and readable by you."
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _where(flt: ExportFilter) -> tuple[str, dict[str, Any]]:
    passed = "b.judged_at IS NOT NULL AND (b.flagged = 0 OR b.review = 'accepted')"
    params: dict[str, Any] = {}
    if flt.min_quality is not None:
        passed += " AND b.judged_mean >= :min_quality"
        params["min_quality"] = flt.min_quality
    batch_ok = f"({passed})"
    if flt.include_unjudged:
        batch_ok = f"({batch_ok} OR b.judged_at IS NULL)"
    where = f"s.datatype = :datatype AND s.status = 'accepted' AND {batch_ok}"
    if not flt.include_test_data:
        where += f" AND NOT {_TEST_DOUBLE}"
    return where, params


# The sample's batch was made by a run on a test double: its content is not real data.
_TEST_DOUBLE = "EXISTS (SELECT 1 FROM runs r WHERE r.id = b.run_id AND r.test_double = 1)"


def count_test_data(conn: sqlite3.Connection, datatype: str, flt: ExportFilter) -> int:
    """The samples that pass ``flt`` but were made on a test double: left out of the export
    unless ``flt.include_test_data``; counted in it when it is."""
    where, params = _where(ExportFilter(flt.min_quality, flt.include_unjudged, True))
    row = _run(
        conn,
        "SELECT COUNT(*) FROM samples s JOIN batches b ON b.id = s.batch_id"
        f" WHERE {where} AND {_TEST_DOUBLE}",
        {**params, "datatype": datatype},
    ).fetchone()
    return int(row[0])


def _run(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> sqlite3.Cursor:
    try:
        return conn.execute(sql, params)
    except sqlite3.Error as exc:
        raise StoreError(f"the export query failed: {exc}") from None


def datatypes_with_samples(conn: sqlite3.Connection) -> list[str]:
    """Data types that have any sample at all."""
    cur = _run(conn, "SELECT DISTINCT datatype FROM samples ORDER BY datatype", {})
    return [str(r[0]) for r in cur.fetchall()]


def count_exportable(conn: sqlite3.Connection, datatype: str, flt: ExportFilter) -> int:
    where, params = _where(flt)
    cur = _run(
        conn,
        f"SELECT COUNT(*) FROM samples s JOIN batches b ON b.id = s.batch_id WHERE {where}",
        {**params, "datatype": datatype},
    )
    return int(cur.fetchone()[0])


def models_of(conn: sqlite3.Connection, datatype: str, flt: ExportFilter) -> list[str]:
    """The generator models of the exportable samples of ``datatype``."""
    where, params = _where(flt)
    cur = _run(
        conn,
        f"SELECT DISTINCT b.model FROM samples s JOIN batches b ON b.id = s.batch_id"
        f" WHERE {where} ORDER BY b.model",
        {**params, "datatype": datatype},
    )
    return [str(r[0]) for r in cur.fetchall()]


def iter_exportable(
    conn: sqlite3.Connection, datatype: str, flt: ExportFilter, *, limit: int | None = None
) -> Iterator[ExportRow]:
    """The exportable samples of ``datatype`` in id order, streamed. With ``limit``, only the
    ``limit`` samples of lowest balance rank (a fixed pseudo-random order of ids)."""
    where, params = _where(flt)
    params = {**params, "datatype": datatype}
    chosen = ""
    if limit is not None:
        chosen = (
            " AND s.id IN (SELECT s.id FROM samples s JOIN batches b ON b.id = s.batch_id"
            f" WHERE {where} ORDER BY {_RANK_FUNCTION}(s.id) LIMIT :limit)"
        )
        params["limit"] = limit
    cur = _run(
        conn,
        "SELECT s.id, s.batch_id, s.cluster_id, s.payload, s.brief, s.created_at, b.model,"
        " b.judged_at IS NOT NULL AS judged, b.judged_mean, b.flagged = 1 AND b.review ="
        " 'accepted' AS reviewed, j.overall, j.authenticity, j.consistency, j.complexity,"
        " j.usability, j.label_agreement"
        " FROM samples s JOIN batches b ON b.id = s.batch_id"
        " LEFT JOIN judgments j ON j.id ="
        "   (SELECT MAX(j2.id) FROM judgments j2 WHERE j2.sample_id = s.id)"
        f" WHERE {where}{chosen} ORDER BY s.id",
        params,
    )
    try:
        for r in cur:
            yield _row(r)
    except sqlite3.Error as exc:
        raise StoreError(f"reading samples of {datatype} failed: {exc}") from None
    finally:
        cur.close()


def _row(r: Sequence[Any]) -> ExportRow:
    judgment = (
        None
        if r[10] is None
        else Judgment(
            float(r[10]),
            float(r[11]),
            float(r[12]),
            float(r[13]),
            float(r[14]),
            None if r[15] is None else float(r[15]),
        )
    )
    return ExportRow(
        id=int(r[0]),
        batch_id=int(r[1]),
        cluster_id=None if r[2] is None else int(r[2]),
        payload=str(r[3]),
        brief=None if r[4] is None else str(r[4]),
        created_at=str(r[5]),
        model=str(r[6]),
        judged=bool(r[7]),
        quality=None if r[8] is None else float(r[8]),
        reviewed=bool(r[9]),
        judgment=judgment,
    )
