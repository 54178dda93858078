"""Human review (memo stage 3), the database side: synchronous, for the ``review`` command,
safe beside the running service (WAL; one short transaction per decision).

A flagged batch's samples do not count until a person decides: ``accept`` puts them back
(``accepted``; one that meanwhile has an exact twin among the accepted becomes ``duplicate``),
``reject`` rejects them. Every decision is a row of ``reviews`` with its time.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gen_service.errors import EXIT_USAGE, GenServiceError, StoreError

Decision = Literal["accepted", "rejected"]


class UnknownBatch(GenServiceError):
    """The id names no batch, or none that waits for review."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class FlaggedBatch:
    batch_id: int
    datatype: str
    day: str
    judged_mean: float | None
    reason: str | None
    regeneration: int
    replaced_by: int | None
    review: str | None
    samples: int
    issues: tuple[str, ...]


def open_for_review(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StoreError(
            f"no database at {path}. Fix: check [service].db in the config, or run the service "
            "first."
        )
    try:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def flagged_batches(
    conn: sqlite3.Connection, *, include_reviewed: bool = False
) -> list[FlaggedBatch]:
    """Flagged batches, oldest first: those waiting for a decision (or all of them)."""
    where = "b.flagged = 1" + ("" if include_reviewed else " AND b.review IS NULL")
    rows = conn.execute(
        "SELECT b.id, b.datatype, b.day, b.judged_mean, b.flag_reason, b.regeneration, b.review,"
        " (SELECT MIN(r.id) FROM batches r WHERE r.replaces = b.id AND r.status = 'ok')"
        "   AS replaced_by,"
        " (SELECT COUNT(*) FROM samples s WHERE s.batch_id = b.id AND s.status = 'flagged')"
        "   AS samples"
        f" FROM batches b WHERE {where} ORDER BY b.id"
    ).fetchall()
    result: list[FlaggedBatch] = []
    for r in rows:
        issues = [
            i
            for (text,) in conn.execute(
                "SELECT issues FROM judgments WHERE batch_id = ?", (r["id"],)
            )
            for i in json.loads(text or "[]")
        ]
        result.append(
            FlaggedBatch(
                r["id"],
                r["datatype"],
                r["day"],
                r["judged_mean"],
                r["flag_reason"],
                r["regeneration"],
                r["replaced_by"],
                r["review"],
                r["samples"],
                tuple(dict.fromkeys(issues)),
            )
        )
    return result


def batch_detail(conn: sqlite3.Connection, batch_id: int) -> dict[str, Any]:
    """A batch with its samples (and briefs) and its judgments; UnknownBatch if none."""
    batch = conn.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if batch is None:
        raise UnknownBatch(_unknown(conn, batch_id))
    samples = conn.execute(
        "SELECT id, status, reason, item_index, brief, payload FROM samples WHERE batch_id = ?"
        " ORDER BY item_index, id",
        (batch_id,),
    ).fetchall()
    judgments = conn.execute(
        "SELECT sample_id, overall, authenticity, consistency, complexity, usability,"
        " label_agreement, labels_ok, labels, issues, recommendation FROM judgments"
        " WHERE batch_id = ? ORDER BY id",
        (batch_id,),
    ).fetchall()
    reviews = conn.execute(
        "SELECT decision, note, decided_at FROM reviews WHERE batch_id = ? ORDER BY id",
        (batch_id,),
    ).fetchall()
    return {
        "batch": dict(batch),
        "samples": [
            {
                **dict(s),
                "brief": json.loads(s["brief"]) if s["brief"] else None,
                "payload": json.loads(s["payload"]),
            }
            for s in samples
        ],
        "judgments": [
            {
                **dict(j),
                "labels": json.loads(j["labels"]) if j["labels"] else None,
                "issues": json.loads(j["issues"] or "[]"),
            }
            for j in judgments
        ],
        "reviews": [dict(r) for r in reviews],
    }


def decide(
    conn: sqlite3.Connection, batch_id: int, decision: Decision, note: str | None, now: str
) -> int:
    """Record a decision on a flagged batch and apply it to its samples; returns how many
    samples it changed. UnknownBatch when the batch does not exist or is not flagged."""
    row = conn.execute("SELECT flagged, review FROM batches WHERE id = ?", (batch_id,)).fetchone()
    if row is None:
        raise UnknownBatch(_unknown(conn, batch_id))
    if not row["flagged"]:
        raise UnknownBatch(
            f"batch {batch_id} is not flagged: only flagged batches wait for review. See "
            "`gen-service review` for the ones that do."
        )
    try:
        conn.execute("BEGIN IMMEDIATE")
        changed = 0
        if decision == "accepted":
            flagged = conn.execute(
                "SELECT id, datatype, content_hash FROM samples WHERE batch_id = ?"
                " AND status = 'flagged'",
                (batch_id,),
            ).fetchall()
            for s in flagged:
                twin = conn.execute(
                    "SELECT 1 FROM samples WHERE datatype = ? AND content_hash = ?"
                    " AND status = 'accepted'",
                    (s["datatype"], s["content_hash"]),
                ).fetchone()
                if twin is None:
                    # Back in the near-duplicate index: the status trigger writes index_log,
                    # which a running service reads before its next commit.
                    conn.execute("UPDATE samples SET status = 'accepted' WHERE id = ?", (s["id"],))
                else:
                    conn.execute(
                        "UPDATE samples SET status = 'duplicate', reason = ? WHERE id = ?",
                        ("review: accepted, but an exact duplicate of an accepted sample", s["id"]),
                    )
                changed += 1
        else:
            cur = conn.execute(
                "UPDATE samples SET status = 'rejected', reason = ? WHERE batch_id = ?"
                " AND status = 'flagged'",
                (f"review: rejected{': ' + note if note else ''}", batch_id),
            )
            changed = cur.rowcount
        conn.execute(
            "UPDATE batches SET review = ?, reviewed_at = ? WHERE id = ?", (decision, now, batch_id)
        )
        conn.execute(
            "INSERT INTO reviews (batch_id, decision, note, decided_at) VALUES (?, ?, ?, ?)",
            (batch_id, decision, note, now),
        )
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        conn.execute("ROLLBACK")
        raise StoreError(f"the review of batch {batch_id} could not be stored: {exc}") from None
    return changed


def _unknown(conn: sqlite3.Connection, batch_id: int) -> str:
    waiting = [b.batch_id for b in flagged_batches(conn)][:10]
    hint = (
        f"flagged batches waiting for review: {', '.join(map(str, waiting))}"
        if waiting
        else "no flagged batch waits for review"
    )
    return f"there is no batch {batch_id}; {hint}. Fix: use an id from `gen-service review`."
