"""Committing one batch, as one unit of work in the database's own thread.

Everything a batch needs happens in one transaction on the SQLite connection's worker thread
(one hop from the event loop, not one per statement): the batch row, its samples, and for each
accepted sample the duplicate decisions, in the order the samples came:

- **exact**: the same prose hash as an accepted sample of its type (the unique index agrees);
- **near**: a MinHash signature (``domain/dedup.py``) whose estimated Jaccard similarity with
  an accepted sample of its type is at least ``threshold``. Candidates come from the LSH band
  keys in ``lsh_bands`` (a clustered table: one indexed lookup per band, no index in memory,
  nothing to rebuild at start); their signatures (``signatures``) decide.

A duplicate points at what it copies (``duplicate_of``). Every accepted sample gets a cluster:
that of its most similar accepted sample at or above ``cluster_threshold``, else its own id
(a cluster is named after its first member, so ids never move). An accepted sample's
signature and band keys are stored with it, so the next sample sees it, even later in the same
batch. Flagged samples leave the bands (:func:`forget`) and come back on review
(:func:`remember`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gen_service.domain import dedup
from gen_service.domain.records import BatchRecord, CommitResult

BANDING_SETTING = "lsh_banding"


@dataclass(frozen=True, slots=True)
class NearDuplicates:
    """The decision thresholds and the band layout (from the cluster threshold)."""

    threshold: float
    cluster_threshold: float

    @property
    def layout(self) -> dedup.Banding:
        return dedup.banding(self.cluster_threshold)


@dataclass(frozen=True, slots=True)
class Match:
    sample_id: int
    cluster_id: int
    similarity: float


def best_match(
    conn: sqlite3.Connection, datatype: str, values: Any, keys: Sequence[int]
) -> Match | None:
    """The accepted sample of ``datatype`` most similar to ``values`` among those sharing a
    band key, or None."""
    marks = ",".join("?" * len(keys))
    rows = conn.execute(
        "SELECT s.sample_id, s.signature, COALESCE(x.cluster_id, s.sample_id)"
        " FROM signatures s JOIN samples x ON x.id = s.sample_id"
        " WHERE s.sample_id IN (SELECT DISTINCT sample_id FROM lsh_bands"
        f"   WHERE datatype = ? AND key IN ({marks}))",
        (datatype, *keys),
    ).fetchall()
    best: Match | None = None
    for sample_id, blob, cluster_id in rows:
        similarity = dedup.jaccard(values, dedup.from_bytes(blob))
        if best is None or similarity > best.similarity:
            best = Match(int(sample_id), int(cluster_id), similarity)
    return best


def remember(conn: sqlite3.Connection, sample_ids: Sequence[int], layout: dedup.Banding) -> None:
    """Put stored signatures back into the bands (a review accepted their samples)."""
    for sample_id in sample_ids:
        row = conn.execute(
            "SELECT datatype, signature FROM signatures WHERE sample_id = ?", (sample_id,)
        ).fetchone()
        if row is not None:
            _add_bands(conn, sample_id, row[0], dedup.band_keys(dedup.from_bytes(row[1]), layout))


def forget(conn: sqlite3.Connection, sample_ids: Sequence[int]) -> None:
    """Take samples out of the bands (their batch was flagged): their replacements must not be
    refused as copies of them. Their signatures stay for a review that puts them back."""
    conn.executemany("DELETE FROM lsh_bands WHERE sample_id = ?", [(i,) for i in sample_ids])


def _add_bands(conn: sqlite3.Connection, sample_id: int, datatype: str, keys: list[int]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO lsh_bands (datatype, key, sample_id) VALUES (?, ?, ?)",
        [(datatype, key, sample_id) for key in keys],
    )


def commit_batch(
    conn: sqlite3.Connection,
    run_id: int | None,
    batch: BatchRecord,
    near: NearDuplicates | None,
) -> CommitResult:
    """Insert ``batch`` and its samples in one transaction, deciding exact and near
    duplicates and clusters; rolled back whole on any error (the caller translates it)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = _commit(conn, run_id, batch, near)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _commit(
    conn: sqlite3.Connection, run_id: int | None, batch: BatchRecord, near: NearDuplicates | None
) -> CommitResult:
    hashes = [s.content_hash for s in batch.samples if s.status == "accepted" and s.content_hash]
    exact: dict[str, int] = {}
    if hashes:
        marks = ",".join("?" * len(hashes))
        exact.update(
            conn.execute(
                "SELECT content_hash, id FROM samples WHERE datatype = ? AND status = 'accepted'"
                f" AND content_hash IN ({marks})",
                (batch.datatype, *hashes),
            ).fetchall()
        )
    cur = conn.execute(
        "INSERT INTO batches (run_id, datatype, model, phase, status, attempts, error,"
        " requested, prompt_tokens, eval_tokens, total_s, load_s, eval_s, latency_s, seed,"
        " temperature, num_predict, created_at, day, template_hash, example_ids, briefs,"
        " refinement, replaces, regeneration, wasted_tokens)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            run_id,
            batch.datatype,
            batch.model,
            batch.phase,
            batch.status,
            batch.attempts,
            batch.error,
            batch.requested,
            batch.prompt_tokens,
            batch.eval_tokens,
            batch.total_s,
            batch.load_s,
            batch.eval_s,
            batch.latency_s,
            batch.seed,
            batch.temperature,
            batch.num_predict,
            batch.created_at,
            batch.day,
            batch.template_hash,
            json.dumps(list(batch.example_ids)) if batch.example_ids else None,
            batch.briefs_json,
            batch.refinement,
            batch.replaces,
            batch.regeneration,
            batch.wasted_tokens,
        ),
    )
    batch_id = cur.lastrowid
    assert batch_id is not None
    accepted = rejected = duplicates = 0
    layout = near.layout if near is not None else None
    for sample in batch.samples:
        status, reason = sample.status, sample.reason
        duplicate_of: int | None = None
        cluster_id: int | None = None
        values: Any = None
        keys: list[int] = []
        if status == "accepted":
            twin = exact.get(sample.content_hash or "")
            if twin is not None:
                status, reason = "duplicate", f"exact duplicate of sample {twin}"
                duplicate_of = twin
            elif near is not None and layout is not None and sample.signature is not None:
                values = dedup.from_bytes(sample.signature)
                keys = dedup.band_keys(values, layout)
                match = best_match(conn, batch.datatype, values, keys)
                if match is not None and match.similarity >= near.threshold:
                    status = "duplicate"
                    reason = (
                        f"near duplicate of sample {match.sample_id} "
                        f"(Jaccard {match.similarity:.2f} >= {near.threshold:.2f})"
                    )
                    duplicate_of = match.sample_id
                elif match is not None and match.similarity >= near.cluster_threshold:
                    cluster_id = match.cluster_id
        cur = conn.execute(
            "INSERT INTO samples (batch_id, datatype, status, reason, content_hash, quota_key,"
            " payload, created_at, day, item_index, brief, duplicate_of, cluster_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                batch_id,
                sample.datatype,
                status,
                reason,
                sample.content_hash,
                sample.quota_key,
                sample.payload_json,
                batch.created_at,
                batch.day,
                sample.item_index,
                sample.brief_json,
                duplicate_of,
                cluster_id,
            ),
        )
        sample_id = cur.lastrowid
        assert sample_id is not None
        if status == "accepted":
            accepted += 1
            if sample.content_hash:
                exact[sample.content_hash] = sample_id
            if cluster_id is None:  # the first of its cluster names it
                conn.execute("UPDATE samples SET cluster_id = id WHERE id = ?", (sample_id,))
            if sample.signature is not None:
                conn.execute(
                    "INSERT INTO signatures (sample_id, datatype, signature) VALUES (?, ?, ?)",
                    (sample_id, batch.datatype, sample.signature),
                )
                if keys:
                    _add_bands(conn, sample_id, batch.datatype, keys)
        elif status == "duplicate":
            duplicates += 1
        else:
            rejected += 1
    conn.execute(
        "UPDATE batches SET valid = ?, invalid = ?, accepted = ?, rejected = ?, duplicates = ?"
        " WHERE id = ?",
        (accepted + duplicates, rejected, accepted, rejected, duplicates, batch_id),
    )
    return CommitResult(batch_id, accepted, rejected, duplicates)


def rebuild_bands(conn: sqlite3.Connection, layout: dedup.Banding) -> int:
    """Recompute every accepted sample's band keys for ``layout`` (the cluster threshold
    changed); returns how many samples were banded."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM lsh_bands")
        rows = conn.execute(
            "SELECT s.sample_id, s.datatype, s.signature FROM signatures s"
            " JOIN samples x ON x.id = s.sample_id WHERE x.status = 'accepted'"
        )
        count = 0
        batch: list[tuple[str, int, int]] = []
        for sample_id, datatype, blob in rows:
            for key in dedup.band_keys(dedup.from_bytes(blob), layout):
                batch.append((datatype, key, sample_id))
            count += 1
            if len(batch) >= 50_000:
                conn.executemany("INSERT OR IGNORE INTO lsh_bands VALUES (?, ?, ?)", batch)
                batch.clear()
        conn.executemany("INSERT OR IGNORE INTO lsh_bands VALUES (?, ?, ?)", batch)
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (BANDING_SETTING, layout.to_setting()),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return count


@dataclass(frozen=True, slots=True)
class SweepChunk:
    """What one chunk of the near-duplicate sweep did."""

    examined: int  # accepted samples without a signature, given one now
    duplicates: int  # of those, near-copies of an earlier accepted sample (now duplicate)


def sweep_chunk(
    conn: sqlite3.Connection, near: NearDuplicates, limit: int, signature_of: Any
) -> SweepChunk:
    """Give up to ``limit`` accepted samples that have no signature yet (written before
    near-duplicates were checked, or imported) one, in id order, in one transaction: a
    near-copy of an earlier accepted sample becomes its duplicate, the others get a cluster and
    join the bands. ``signature_of(datatype, payload_text) -> bytes`` computes a signature."""
    layout = near.layout
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            "SELECT x.id, x.datatype, x.payload FROM samples x"
            " LEFT JOIN signatures s ON s.sample_id = x.id"
            " WHERE x.status = 'accepted' AND s.sample_id IS NULL ORDER BY x.id LIMIT ?",
            (limit,),
        ).fetchall()
        duplicates = 0
        for sample_id, datatype, payload in rows:
            blob = signature_of(datatype, payload)
            values = dedup.from_bytes(blob)
            keys = dedup.band_keys(values, layout)
            match = best_match(conn, datatype, values, keys)
            if match is not None and match.similarity >= near.threshold:
                conn.execute(
                    "UPDATE samples SET status = 'duplicate', duplicate_of = ?, reason = ?"
                    " WHERE id = ?",
                    (
                        match.sample_id,
                        f"near duplicate of sample {match.sample_id} (Jaccard "
                        f"{match.similarity:.2f} >= {near.threshold:.2f}; found by the sweep)",
                        sample_id,
                    ),
                )
                duplicates += 1
                # Its signature is kept (so it is not examined again), outside the bands.
                conn.execute(
                    "INSERT INTO signatures (sample_id, datatype, signature) VALUES (?, ?, ?)",
                    (sample_id, datatype, blob),
                )
                continue
            cluster = (
                match.cluster_id if match and match.similarity >= near.cluster_threshold else None
            )
            conn.execute(
                "UPDATE samples SET cluster_id = COALESCE(?, cluster_id, id) WHERE id = ?",
                (cluster, sample_id),
            )
            conn.execute(
                "INSERT INTO signatures (sample_id, datatype, signature) VALUES (?, ?, ?)",
                (sample_id, datatype, blob),
            )
            _add_bands(conn, sample_id, datatype, keys)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SweepChunk(len(rows), duplicates)
