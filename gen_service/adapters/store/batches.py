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

A commit reads before it writes: the exact twins of the batch in one query, the candidates
sharing a band key with any of its samples in another (and their signatures), then decides
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
    insert_rows(
        conn,
        "INSERT OR IGNORE INTO lsh_bands (datatype, key, sample_id) VALUES ",
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
    (result,) = commit_batches(conn, run_id, [batch], near)
    return result


def commit_batches(
    conn: sqlite3.Connection,
    run_id: int | None,
    records: Sequence[BatchRecord],
    near: NearDuplicates | None,
) -> list[CommitResult]:
    """Insert ``records`` in order, each as :func:`commit_batch` does (a later one sees the
    earlier ones' samples), in one transaction: all of them or, on any error, none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = _commit(conn, run_id, records, near)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
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
) -> list[CommitResult]:
    # The decisions come first, from a few reads per data type (the exact twins of every
    # sample, then the near-duplicate candidates sharing a band key with any of them), with
    # the group's own earlier samples held in memory as the database would show them; then
    # every row is written, a few statements per table. The ids are the ones SQLite would
    # give, one after another.
    layout = near.layout if near is not None else None
    exact: dict[str, dict[str, int]] = {}  # data type -> accepted hash -> sample id
    index: dict[str, _Candidates] = {}
    keys_of: dict[tuple[int, int], list[int]] = {}  # (record, position) -> band keys
    for datatype in dict.fromkeys(r.datatype for r in records):
        mine = [(i, r) for i, r in enumerate(records) if r.datatype == datatype]
        exact[datatype] = _exact_twins(conn, datatype, [r for _, r in mine])
        if layout is not None:
            for i, record in mine:
                for position, sample in enumerate(record.samples):
                    if sample.status == "accepted" and sample.signature is not None:
                        signature = dedup.from_bytes(sample.signature)
                        keys_of[(i, position)] = dedup.band_keys(signature, layout)
        index[datatype] = _Candidates.load(
            conn, datatype, [k for (i, _), k in keys_of.items() if records[i].datatype == datatype]
        )
    next_batch = _next_id(conn, "batches")
    next_sample = _next_id(conn, "samples")

    results: list[CommitResult] = []
    batch_rows: list[tuple[Any, ...]] = []
    sample_rows: list[tuple[Any, ...]] = []
    signature_rows: list[tuple[int, str, bytes]] = []
    band_rows: list[tuple[str, int, int]] = []
    for i, batch in enumerate(records):
        batch_id = next_batch + i
        twins, candidates = exact[batch.datatype], index[batch.datatype]
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
                        band_rows.extend((batch.datatype, key, sample_id) for key in keys)
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
    insert_rows(
        conn, "INSERT OR IGNORE INTO lsh_bands (datatype, key, sample_id) VALUES ", band_rows
    )
    return results


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
    a band key with any of its samples (read once), and its own accepted samples as they are
    added. :meth:`best` answers what :func:`best_match` would ask the database at that point."""

    def __init__(self) -> None:
        self._by_key: dict[int, set[int]] = {}
        self._signatures: dict[int, Any] = {}
        self._clusters: dict[int, int] = {}

    @classmethod
    def load(
        cls, conn: sqlite3.Connection, datatype: str, key_lists: Iterable[Sequence[int]]
    ) -> _Candidates:
        index = cls()
        wanted = sorted({key for keys in key_lists for key in keys})
        ids: set[int] = set()
        for chunk in _chunks(wanted):
            for key, sample_id in conn.execute(
                "SELECT key, sample_id FROM lsh_bands"
                f" WHERE datatype = ? AND key IN ({','.join('?' * len(chunk))})",
                (datatype, *chunk),
            ):
                index._by_key.setdefault(key, set()).add(sample_id)
                ids.add(sample_id)
        for chunk in _chunks(sorted(ids)):
            for sample_id, blob, cluster_id in conn.execute(
                "SELECT s.sample_id, s.signature, COALESCE(x.cluster_id, s.sample_id)"
                " FROM signatures s JOIN samples x ON x.id = s.sample_id"
                f" WHERE s.sample_id IN ({','.join('?' * len(chunk))})",
                tuple(chunk),
            ):
                index._signatures[sample_id] = dedup.from_bytes(blob)
                index._clusters[sample_id] = cluster_id
        return index

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
