"""The report's read-only queries: one local day's rows for
:func:`gen_service.domain.report.build_report`.

Synchronous, on a read-only connection (:func:`~gen_service.adapters.store.core.open_readonly`),
so the report is written while the service runs, from the CLI or from a worker thread of the
process phase. Per-type queries ride the ``(datatype, status)`` and ``(datatype, day)`` indexes,
so a day's report reads that day's rows, not the whole table.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from gen_service.adapters.store.core import iso, query
from gen_service.domain.report import ReportRows, StoredSample, Target, TypeRows
from gen_service.errors import StoreError

# The reason code: samples.reason up to its first ':' (the whole text when it has none).
_CODE = (
    "CASE WHEN reason IS NULL THEN 'unknown' WHEN instr(reason, ':') > 0"
    " THEN trim(substr(reason, 1, instr(reason, ':') - 1)) ELSE reason END"
)


def day_bounds(day: str, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    """The local day's start and end as aware datetimes (23 or 25 hours across DST)."""
    date = dt.date.fromisoformat(day)
    start = dt.datetime.combine(date, dt.time(0), tz)
    end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(0), tz)
    return start, end


def read_report_rows(
    conn: sqlite3.Connection,
    *,
    day: str,
    tz: dt.tzinfo,
    timezone: str,
    now: dt.datetime,
    targets: Mapping[str, Target],
    flag_below: float,
    datatypes: Sequence[str] = (),
) -> ReportRows:
    """Everything the report of ``day`` shows; the types are ``datatypes`` (in that order)
    and any other type with rows that day."""
    _, end = day_bounds(day, tz)
    moment = min(now, end)
    window_start = iso(moment - dt.timedelta(hours=24))
    counts = _by_type(
        conn,
        "SELECT datatype, accepted, rejected, duplicates, flagged FROM daily_counts WHERE day = ?",
        (day,),
    )
    totals = _by_type(
        conn,
        "SELECT datatype, SUM(accepted) AS accepted FROM daily_counts WHERE day <= ?"
        " GROUP BY datatype",
        (day,),
    )
    batches = _by_type(
        conn,
        "SELECT datatype, COUNT(*) AS total, SUM(status = 'failed') AS failed,"
        " SUM(attempts > 1) AS retried, SUM(flagged = 1) AS flagged,"
        " SUM(replaces IS NOT NULL AND status = 'ok') AS regenerated,"
        " SUM(flagged = 1 AND review IS NULL AND NOT EXISTS (SELECT 1 FROM batches r"
        "     WHERE r.replaces = b.id AND r.status = 'ok')) AS waiting"
        " FROM batches b WHERE day = ? GROUP BY datatype",
        (day,),
    )
    quality = _by_type(
        conn,
        "SELECT datatype, COUNT(*) AS judged, AVG(overall) AS overall,"
        " AVG(authenticity) AS authenticity, AVG(consistency) AS consistency,"
        " AVG(complexity) AS complexity, AVG(usability) AS usability,"
        " AVG(label_agreement) AS label_agreement FROM judgments WHERE day = ?"
        " GROUP BY datatype",
        (day,),
    )
    window = _by_type(
        conn,
        "SELECT datatype, SUM(accepted) AS accepted, MIN(created_at) AS first FROM batches"
        " WHERE created_at >= ? AND created_at < ? GROUP BY datatype",
        (window_start, iso(moment)),
    )
    scores: dict[str, list[float]] = {}
    for r in query(conn, "SELECT datatype, overall FROM judgments WHERE day = ?", (day,)):
        scores.setdefault(r["datatype"], []).append(float(r["overall"]))
    names = list(dict.fromkeys([*datatypes, *counts, *batches]))
    first_day = query(conn, "SELECT MIN(day) AS first FROM batches")[0]["first"]
    types = [
        _type_rows(conn, name, day, counts, totals, batches, quality, window, scores.get(name, []))
        for name in names
    ]
    test_data = 0
    if query(conn, "SELECT 1 FROM pragma_table_info('runs') WHERE name = 'test_double'", ()):
        test_data = query(
            conn,
            "SELECT COUNT(*) AS n FROM samples s JOIN batches b ON b.id = s.batch_id"
            " JOIN runs r ON r.id = b.run_id WHERE s.day = ? AND s.status = 'accepted'"
            " AND r.test_double = 1",
            (day,),
        )[0]["n"]
    return ReportRows(
        day=day,
        first_day=first_day,
        moment=moment,
        generated_at=now,
        timezone=timezone,
        tz=tz,
        database=_db_path(conn),
        flag_below=flag_below,
        targets=targets,
        types=types,
        test_data=int(test_data),
    )


def _type_rows(
    conn: sqlite3.Connection,
    name: str,
    day: str,
    counts: Mapping[str, sqlite3.Row],
    totals: Mapping[str, sqlite3.Row],
    batches: Mapping[str, sqlite3.Row],
    quality: Mapping[str, sqlite3.Row],
    window: Mapping[str, sqlite3.Row],
    scores: Sequence[float],
) -> TypeRows:
    c, b, q, w = counts.get(name), batches.get(name), quality.get(name), window.get(name)
    total = totals.get(name)
    rejections = query(
        conn,
        f"SELECT {_CODE} AS code, COUNT(*) AS n FROM samples"
        " WHERE datatype = ? AND status = 'rejected' AND day = ?"
        " GROUP BY code ORDER BY n DESC, code",
        (name, day),
    )
    samples = query(
        conn,
        "SELECT created_at, payload, brief FROM samples"
        " WHERE datatype = ? AND status = 'accepted' AND day = ? ORDER BY id",
        (name, day),
    )
    return TypeRows(
        datatype=name,
        accepted=_int(c, "accepted"),
        rejected=_int(c, "rejected"),
        duplicates=_int(c, "duplicates"),
        flagged=_int(c, "flagged"),
        accepted_total=_int(total, "accepted"),
        batches=_int(b, "total"),
        batches_failed=_int(b, "failed"),
        batches_retried=_int(b, "retried"),
        batches_flagged=_int(b, "flagged"),
        batches_regenerated=_int(b, "regenerated"),
        batches_waiting_review=_int(b, "waiting"),
        judged=_int(q, "judged"),
        scores={
            k: None if q is None or q[k] is None else float(q[k])
            for k in ("overall", "authenticity", "consistency", "complexity", "usability")
        },
        label_agreement=None if q is None or q["label_agreement"] is None
        else float(q["label_agreement"]),
        overall_scores=tuple(scores),
        rejections=tuple((str(r["code"]), int(r["n"])) for r in rejections),
        window_accepted=_int(w, "accepted"),
        window_first=None if w is None else w["first"],
        samples=tuple(StoredSample(r["created_at"], r["payload"], r["brief"]) for r in samples),
    )  # fmt: skip


def _by_type(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> dict[str, sqlite3.Row]:
    return {r["datatype"]: r for r in query(conn, sql, params)}


def _int(row: sqlite3.Row | None, key: str) -> int:
    if row is None or row[key] is None:
        return 0
    return int(row[key])


def _db_path(conn: sqlite3.Connection) -> str:
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"database query failed: {exc}") from None
    return str(row[2]) if row else ""
