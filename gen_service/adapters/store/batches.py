"""Committing one batch, as one unit of work in the database's own thread.

Everything a batch needs happens in one transaction on the SQLite connection's worker thread
(one hop from the event loop, not one per statement): the batch row, its samples, and for each
accepted sample the duplicate decisions, in the order the samples came:

- **exact**: the same prose hash as an accepted sample of its type (the unique index agrees);
- **near**: a MinHash signature (``domain/dedup.py``) whose estimated Jaccard similarity with
  an accepted sample of its type is at least ``threshold``. Candidates come from the LSH band
  fingerprints of the in-memory index (``near_index.py``, rebuilt from the stored signatures
  at start); their stored signatures (``signatures``) decide.

A duplicate points at what it copies (``duplicate_of``). Every accepted sample gets a cluster:
that of its most similar accepted sample at or above ``cluster_threshold``, else its own id
(a cluster is named after its first member, so ids never move). An accepted sample's
signature is stored with it and its fingerprints join the index once the transaction commits,
so the next sample sees it (a later one in the same batch too). Flagged samples leave the
index and come back on review: the index follows their status (``index_log``).

A commit reads before it writes: the exact twins of the batch in one query, the candidates
sharing a band fingerprint with any of its samples from the index (and their signatures from
the database in one query), then decides
sample by sample with the batch's own earlier samples held as the database would show them,
and writes every row with one statement per table (the ids are the ones SQLite would give).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from gen_service.adapters.store.near_index import BandIndex, NearIndex
from gen_service.domain import dedup
from gen_service.domain.records import BatchRecord, CommitResult

log = structlog.get_logger("gen_service.store")


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


def commit_batch(
    conn: sqlite3.Connection,
    run_id: int | None,
    batch: BatchRecord,
    near: NearDuplicates | None,
    index: NearIndex | None = None,
) -> CommitResult:
    """Insert ``batch`` and its samples in one transaction, deciding exact and near
    duplicates and clusters; rolled back whole on any error (the caller translates it)."""
    (result,) = commit_batches(conn, run_id, [batch], near, index)
    return result


def commit_batches(
    conn: sqlite3.Connection,
    run_id: int | None,
    records: Sequence[BatchRecord],
    near: NearDuplicates | None,
    index: NearIndex | None = None,
) -> list[CommitResult]:
    """Insert ``records`` in order, each as :func:`commit_batch` does (a later one sees the
    earlier ones' samples), in one transaction: all of them or, on any error, none. With
    ``near``, ``index`` is the near-duplicate index (its layout ``near.layout``); the
    accepted samples join it once the transaction has committed."""
    if near is not None and index is None:
        raise ValueError("near-duplicate checks need the index")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if near is not None and index is not None:
            index.catch_up(conn)
        results, additions = _commit(conn, run_id, records, near, index)
        position = index.log_position(conn) if index is not None and additions else 0
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if index is not None and additions:
        try:
            index.committed(additions, position)
        except Exception:  # committed: the index catches up from index_log at the next commit
            log.exception("dedup.index_update_failed")
    return results


_BATCH_COLUMNS = (
    "id, run_id, datatype, model, phase, status, attempts, error, requested, prompt_tokens,"
    " eval_tokens, total_s, load_s, eval_s, latency_s, seed, temperature, num_predict,"
    " created_at, day, template_hash, example_ids, briefs, refinement, replaces, regeneration,"
    " wasted_tokens, valid, invalid, accepted, rejected, duplicates"
)
_SAMPLE_COLUMNS = (
    "id, batch_id, datatype, status, reason, content_hash, quota_key, payload, created_at, day,"
    " item_index, brief, duplicate_of, cluster_id"
)


def _commit(
    conn: sqlite3.Connection,
    run_id: int | None,
    records: Sequence[BatchRecord],
    near: NearDuplicates | None,
    index: NearIndex | None,
) -> tuple[list[CommitResult], list[tuple[str, int, list[int]]]]:
    # The decisions come first, from a few reads per data type (the exact twins of every
    # sample, then the near-duplicate candidates sharing a band fingerprint with any of them), with
    # the group's own earlier samples held in memory as the database would show them; then
    # every row is written, a few statements per table. The ids are the ones SQLite would
    # give, one after another.
    exact: dict[str, dict[str, int]] = {}  # data type -> accepted hash -> sample id
    candidates_of: dict[str, _Candidates] = {}
    keys_of: dict[tuple[int, int], list[int]] = {}  # (record, position) -> band fingerprints
    for datatype in dict.fromkeys(r.datatype for r in records):
        mine = [(i, r) for i, r in enumerate(records) if r.datatype == datatype]
        exact[datatype] = _exact_twins(conn, datatype, [r for _, r in mine])
        if index is None:
            candidates_of[datatype] = _Candidates()
            continue
        signed = [
            ((i, position), sample.signature)
            for i, record in mine
            for position, sample in enumerate(record.samples)
            if sample.status == "accepted" and sample.signature is not None
        ]
        if signed:
            prints = index.fingerprints([blob for _, blob in signed]).tolist()
            keys_of.update(zip([at for at, _ in signed], prints, strict=True))
        mine_keys = [k for (i, _), k in keys_of.items() if records[i].datatype == datatype]
        candidates_of[datatype] = _Candidates.load(conn, index.of(datatype), mine_keys)
    next_batch = _next_id(conn, "batches")
    next_sample = _next_id(conn, "samples")

    results: list[CommitResult] = []
    batch_rows: list[tuple[Any, ...]] = []
    sample_rows: list[tuple[Any, ...]] = []
    signature_rows: list[tuple[int, str, bytes]] = []
    additions: list[tuple[str, int, list[int]]] = []  # join the index once committed
    for i, batch in enumerate(records):
        batch_id = next_batch + i
        twins, candidates = exact[batch.datatype], candidates_of[batch.datatype]
        accepted = rejected = duplicates = 0
        for position, sample in enumerate(batch.samples):
            sample_id = next_sample
            next_sample += 1
            status, reason = sample.status, sample.reason
            duplicate_of: int | None = None
            cluster_id: int | None = None
            keys: list[int] = []
            values: Any = None
            if status == "accepted":
                twin = twins.get(sample.content_hash or "")
                if twin is not None:
                    status, reason = "duplicate", f"exact duplicate of sample {twin}"
                    duplicate_of = twin
                elif near is not None and (i, position) in keys_of:
                    assert sample.signature is not None
                    values = dedup.from_bytes(sample.signature)
                    keys = keys_of[(i, position)]
                    match = candidates.best(values, keys)
                    if match is not None and match.similarity >= near.threshold:
                        status = "duplicate"
                        reason = (
                            f"near duplicate of sample {match.sample_id} "
                            f"(Jaccard {match.similarity:.2f} >= {near.threshold:.2f})"
                        )
                        duplicate_of = match.sample_id
                    elif match is not None and match.similarity >= near.cluster_threshold:
                        cluster_id = match.cluster_id
            if status == "accepted":
                accepted += 1
                if sample.content_hash:
                    twins[sample.content_hash] = sample_id
                if cluster_id is None:  # the first of its cluster names it
                    cluster_id = sample_id
                if sample.signature is not None:
                    signature_rows.append((sample_id, batch.datatype, sample.signature))
                    if keys:
                        additions.append((batch.datatype, sample_id, keys))
                        candidates.add(sample_id, cluster_id, values, keys)
            elif status == "duplicate":
                duplicates += 1
            else:
                rejected += 1
            sample_rows.append(
                (
                    sample_id,
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
                )
            )
        batch_rows.append(
            (
                batch_id,
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
                accepted + duplicates,
                rejected,
                accepted,
                rejected,
                duplicates,
            )
        )
        results.append(CommitResult(batch_id, accepted, rejected, duplicates))

    insert_rows(conn, f"INSERT INTO batches ({_BATCH_COLUMNS}) VALUES ", batch_rows)
    insert_rows(conn, f"INSERT INTO samples ({_SAMPLE_COLUMNS}) VALUES ", sample_rows)
    insert_rows(
        conn, "INSERT INTO signatures (sample_id, datatype, signature) VALUES ", signature_rows
    )
    return results, additions


def _exact_twins(
    conn: sqlite3.Connection, datatype: str, records: Sequence[BatchRecord]
) -> dict[str, int]:
    """The accepted samples of ``datatype`` whose prose hash one of ``records``' accepted
    samples has: hash -> sample id."""
    hashes = sorted(
        {
            s.content_hash
            for r in records
            for s in r.samples
            if s.status == "accepted" and s.content_hash
        }
    )
    found: dict[str, int] = {}
    for chunk in _chunks(hashes):
        found.update(
            conn.execute(
                # The partial unique index holds exactly these rows; named, because without
                # statistics the planner prefers (datatype, status) and reads every accepted
                # sample of the type.
                "SELECT content_hash, id FROM samples INDEXED BY samples_accepted_hash"
                " WHERE datatype = ? AND status = 'accepted'"
                f" AND content_hash IN ({','.join('?' * len(chunk))})",
                (datatype, *chunk),
            ).fetchall()
        )
    return found


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    """The rowid SQLite would give the next row of ``table`` (one past the largest)."""
    (row,) = conn.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}").fetchall()
    return int(row[0])


_CHUNK = 500  # values bound per IN (...) list: well under any build's variable limit
_MOST_BOUND = 999  # values bound per statement: SQLite's smallest default limit


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (``head`` ends with ``VALUES``) with as many rows per statement as fit
    in :data:`_MOST_BOUND` values, each row as its own insert would be (in order, ``OR
    IGNORE`` per row). Why not executemany: it steps once per row, and the writer's thread
    gives up Python's lock around every step and must win it back from the event loop's
    thread (waiting up to the 5 ms switch interval when that thread is busy); a statement
    inserts all its rows in one step."""
    if not rows:
        return
    width = len(rows[0])
    per = max(1, _MOST_BOUND // width)
    marks = "(" + ",".join("?" * width) + ")"
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        conn.execute(head + ",".join([marks] * len(chunk)), [v for row in chunk for v in row])


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


class _Candidates:
    """The near-duplicate candidates of one batch: the accepted samples of its type that share
    a band fingerprint with any of its samples (looked up once, their signatures read in one
    query), and its own accepted samples as they are added. :meth:`best` answers which
    accepted sample is most similar at that point of the commit."""

    def __init__(self) -> None:
        self._by_key: dict[int, set[int]] = {}
        self._signatures: dict[int, Any] = {}
        self._clusters: dict[int, int] = {}

    @classmethod
    def load(
        cls, conn: sqlite3.Connection, bands: BandIndex, key_lists: Iterable[Sequence[int]]
    ) -> _Candidates:
        candidates = cls()
        candidates._by_key = {
            key: set(ids)
            for key, ids in bands.lookup(key for keys in key_lists for key in keys).items()
        }
        ids = sorted({i for found in candidates._by_key.values() for i in found})
        for chunk in _chunks(ids):
            for sample_id, blob, cluster_id in conn.execute(
                "SELECT s.sample_id, s.signature, COALESCE(x.cluster_id, s.sample_id)"
                " FROM signatures s JOIN samples x ON x.id = s.sample_id"
                f" WHERE s.sample_id IN ({','.join('?' * len(chunk))})",
                tuple(chunk),
            ):
                candidates._signatures[sample_id] = dedup.from_bytes(blob)
                candidates._clusters[sample_id] = cluster_id
        return candidates

    def add(self, sample_id: int, cluster_id: int, values: Any, keys: Sequence[int]) -> None:
        self._signatures[sample_id] = values
        self._clusters[sample_id] = cluster_id
        for key in keys:
            self._by_key.setdefault(key, set()).add(sample_id)

    def best(self, values: Any, keys: Sequence[int]) -> Match | None:
        """The most similar candidate sharing a key with ``keys`` (the lowest id on a tie, as
        the database returns them), or None."""
        found: set[int] = set()
        for key in keys:
            found.update(self._by_key.get(key, ()))
        ids = sorted(i for i in found if i in self._signatures)
        if not ids:
            return None
        agree = np.count_nonzero(np.stack([self._signatures[i] for i in ids]) == values, axis=1)
        best = int(np.argmax(agree))
        similarity = float(agree[best]) / len(values)
        return Match(ids[best], int(self._clusters[ids[best]]), similarity)


@dataclass(frozen=True, slots=True)
class SweepChunk:
    """What one chunk of the near-duplicate sweep did."""

    examined: int  # accepted samples without a signature, given one now
    duplicates: int  # of those, near-copies of an earlier accepted sample (now duplicate)


def sweep_chunk(
    conn: sqlite3.Connection,
    near: NearDuplicates,
    index: NearIndex,
    limit: int,
    signature_of: Any,
) -> SweepChunk:
    """Give up to ``limit`` accepted samples that have no signature yet (written before
    near-duplicates were checked, or imported) one, in id order, in one transaction: a
    near-copy of an earlier accepted sample becomes its duplicate, the others get a cluster and
    join the index. ``signature_of(datatype, payload_text) -> bytes`` computes a signature."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        index.catch_up(conn)
        rows = conn.execute(
            "SELECT x.id, x.datatype, x.payload FROM samples x"
            " LEFT JOIN signatures s ON s.sample_id = x.id"
            " WHERE x.status = 'accepted' AND s.sample_id IS NULL ORDER BY x.id LIMIT ?",
            (limit,),
        ).fetchall()
        signed = [(int(i), t, signature_of(t, payload)) for i, t, payload in rows]
        prints = index.fingerprints([blob for _, _, blob in signed]).tolist() if signed else []
        candidates = {
            datatype: _Candidates.load(
                conn,
                index.of(datatype),
                [k for (_, t, _), k in zip(signed, prints, strict=True) if t == datatype],
            )
            for datatype in {t for _, t, _ in signed}
        }
        duplicates = 0
        additions: list[tuple[str, int, list[int]]] = []
        for (sample_id, datatype, blob), keys in zip(signed, prints, strict=True):
            values = dedup.from_bytes(blob)
            match = candidates[datatype].best(values, keys)
            conn.execute(
                "INSERT INTO signatures (sample_id, datatype, signature) VALUES (?, ?, ?)",
                (sample_id, datatype, blob),
            )
            if match is not None and match.similarity >= near.threshold:
                # Its signature is kept (so it is not examined again), outside the index.
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
                continue
            cluster = (
                match.cluster_id if match and match.similarity >= near.cluster_threshold else None
            )
            (cluster_id,) = conn.execute(
                "UPDATE samples SET cluster_id = COALESCE(?, cluster_id, id) WHERE id = ?"
                " RETURNING cluster_id",
                (cluster, sample_id),
            ).fetchone()
            candidates[datatype].add(sample_id, int(cluster_id), values, keys)
            additions.append((datatype, sample_id, keys))
        position = index.log_position(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    index.committed(additions, position)
    return SweepChunk(len(rows), duplicates)
