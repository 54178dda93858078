"""What the database says about past work, for ``gen-service plan``: read-only, synchronous
sqlite3 on the connection :func:`~gen_service.adapters.store.open_readonly` gives (like
``status``), so it works while the service writes.

Only the most recent :data:`RECENT_BATCHES` batches of each (data type, model) and of each
model count: the prompts, the config and the server change, and the plan should follow what
the service does now.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass

from gen_service.adapters.store.core import query

RECENT_BATCHES = 2000


@dataclass(frozen=True, slots=True)
class TypeHistory:
    """Recent batches of one data type written by one model, failed ones included."""

    batches: int
    requested: int
    accepted: int
    eval_tokens: int


@dataclass(frozen=True, slots=True)
class ModelHistory:
    """Recent batches of one model: the tokens it decoded and the seconds it had at least
    one request in flight (the union of the batches' request spans)."""

    batches: int
    eval_tokens: int
    busy_s: float


@dataclass(frozen=True, slots=True)
class Holdings:
    """Accepted samples of a data type: in all, and on the given day."""

    accepted: int
    accepted_today: int


def type_history(conn: sqlite3.Connection) -> dict[tuple[str, str], TypeHistory]:
    """(data type, model name) -> its recent batches."""
    rows = query(
        conn,
        "SELECT datatype, model, COUNT(*) AS batches, SUM(requested) AS requested,"
        " SUM(accepted) AS accepted, SUM(eval_tokens) AS eval_tokens FROM ("
        "  SELECT datatype, model, requested, accepted, eval_tokens, ROW_NUMBER() OVER"
        "  (PARTITION BY datatype, model ORDER BY id DESC) AS recency FROM batches"
        ") WHERE recency <= ? GROUP BY datatype, model",
        (RECENT_BATCHES,),
    )
    return {
        (r["datatype"], r["model"]): TypeHistory(
            r["batches"], r["requested"] or 0, r["accepted"] or 0, r["eval_tokens"] or 0
        )
        for r in rows
    }


def model_history(conn: sqlite3.Connection) -> dict[str, ModelHistory]:
    """Model name -> its recent batches' tokens and busy seconds.

    A batch's request ran from ``created_at`` (when it was sent) for ``latency_s`` (retries
    included); overlapping spans (parallel slots) count once, so tokens / busy seconds is the
    model's aggregate rate while it had work."""
    rows = query(
        conn,
        "SELECT model, created_at, latency_s, eval_tokens FROM ("
        "  SELECT model, created_at, latency_s, eval_tokens, ROW_NUMBER() OVER"
        "  (PARTITION BY model ORDER BY id DESC) AS recency FROM batches"
        ") WHERE recency <= ? ORDER BY model, created_at",
        (RECENT_BATCHES,),
    )
    spans: dict[str, list[tuple[float, float]]] = {}
    tokens: dict[str, int] = {}
    for r in rows:
        start = _timestamp(r["created_at"])
        if start is None:
            continue
        spans.setdefault(r["model"], []).append((start, start + max(0.0, r["latency_s"] or 0.0)))
        tokens[r["model"]] = tokens.get(r["model"], 0) + (r["eval_tokens"] or 0)
    return {
        model: ModelHistory(len(s), tokens[model], _union_seconds(s)) for model, s in spans.items()
    }


def holdings(conn: sqlite3.Connection, day: str) -> dict[str, Holdings]:
    """Data type -> accepted samples in all and on ``day`` (YYYY-MM-DD, the service's zone)."""
    rows = query(
        conn,
        "SELECT datatype, SUM(accepted) AS accepted,"
        " SUM(CASE WHEN day = ? THEN accepted ELSE 0 END) AS today"
        " FROM daily_counts GROUP BY datatype",
        (day,),
    )
    return {r["datatype"]: Holdings(r["accepted"] or 0, r["today"] or 0) for r in rows}


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _union_seconds(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] spans sorted by start."""
    total = 0.0
    current_start: float | None = None
    current_end = 0.0
    for start, end in spans:
        if current_start is None or start > current_end:
            if current_start is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_start is not None:
        total += current_end - current_start
    return total
