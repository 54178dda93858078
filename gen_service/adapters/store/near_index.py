"""The near-duplicate index: LSH band fingerprints of every accepted sample, in memory.

Per data type, each accepted sample's signature gives one 32-bit fingerprint per band
(``domain/dedup.band_fingerprints``); two samples sharing one are candidates. The index maps
fingerprints to sample ids in sorted numpy arrays (8 bytes per band and sample: 25 bands of
100,000 samples are 20 MB), with the latest additions in a small dict made into a sorted run
now and then, so a lookup is a few binary searches and an addition writes nothing to disk.

The database stays the truth: the signatures are stored (``signatures``), so :meth:`load`
rebuilds the index at start (seconds per 100,000 samples), and a sample is in the index when it
is ``accepted`` and has a signature. Changes made by other connections or processes (a review
that accepts a flagged batch, a flag from the judge, another writer) reach it through
``index_log``: triggers append the id of every sample that gained a signature or entered or
left ``accepted``, and :meth:`catch_up` replays the log's tail at the start of every write
transaction that uses the index (under SQLite's write lock, so nothing is missed). The writer's
own additions are applied only after their transaction commits (:meth:`NearIndex.add`), so a
rolled-back commit leaves no trace.

Everything here runs on the store connection's worker thread, one call at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from gen_service.domain import dedup
from gen_service.domain.signing import prose_of

_MERGE_AT = 2_048  # pending (fingerprint, sample) pairs before they become a sorted run (~0.4 MB)
_LOAD_CHUNK = 20_000  # signatures read and fingerprinted at once while loading
_RESIGN_CHUNK = 2_000  # stored signatures computed again per transaction (about a second)
SCHEME_SETTING = "signature_scheme"  # settings key: what the stored signatures were made with


class BandIndex:
    """One data type's fingerprints -> sample ids: a few sorted runs of (fingerprint, sample)
    pairs, each a fraction of the one before (merged when it reaches an eighth of it, so a
    pair is copied a few times in all and a merge into the largest run is rare), and the
    latest pairs in a dict."""

    __slots__ = ("_pending", "_pending_pairs", "_runs", "_top")

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
        self._pending: dict[int, list[int]] = {}
        self._pending_pairs = 0
        self._top = -1  # the largest sample id ever added: a larger one is not held

    def __len__(self) -> int:
        """(fingerprint, sample) pairs held."""
        return sum(int(fp.size) for fp, _ in self._runs) + self._pending_pairs

    @property
    def nbytes(self) -> int:
        return sum(int(fp.nbytes + ids.nbytes) for fp, ids in self._runs)

    def extend(self, ids: Sequence[int], fingerprints: np.ndarray[Any, Any]) -> None:
        """Add many samples at once (loading): straight into the sorted runs."""
        if not len(ids):
            return
        fp = np.ascontiguousarray(fingerprints, dtype=np.uint32).ravel()
        owners = np.repeat(np.asarray(ids, dtype=np.uint32), fingerprints.shape[1])
        self._top = max(self._top, int(owners.max()))
        self._push(fp, owners)

    def add(self, sample_id: int, fingerprints: Iterable[int]) -> None:
        """Add one sample (a commit): into the pending dict, made a run when it has grown."""
        self._top = max(self._top, sample_id)
        for fp in fingerprints:
            self._pending.setdefault(fp, []).append(sample_id)
            self._pending_pairs += 1
        if self._pending_pairs >= _MERGE_AT:
            self._flush()

    def lookup(self, fingerprints: Iterable[int]) -> dict[int, list[int]]:
        """The samples holding each of ``fingerprints`` (only those some sample holds)."""
        wanted = np.unique(np.fromiter(fingerprints, dtype=np.uint32))
        found: dict[int, list[int]] = {}
        if not wanted.size:
            return found
        for fp, ids in self._runs:
            lo = np.searchsorted(fp, wanted, side="left")
            hi = np.searchsorted(fp, wanted, side="right")
            hit = np.nonzero(hi > lo)[0]
            spans = zip(wanted[hit].tolist(), lo[hit].tolist(), hi[hit].tolist(), strict=True)
            for key, start, stop in spans:
                found.setdefault(key, []).extend(ids[start:stop].tolist())
        if self._pending:
            for key in wanted.tolist():
                more = self._pending.get(key)
                if more:
                    found.setdefault(key, []).extend(more)
        return found

    def discard(self, sample_ids: Iterable[int]) -> None:
        """Take samples out (gone from ``accepted``); ids not held are ignored."""
        # Ids above the largest ever added (another writer's new samples) cannot be held.
        gone = np.fromiter((i for i in sample_ids if i <= self._top), dtype=np.uint32)
        if not gone.size:
            return
        runs = []
        for fp, ids in self._runs:
            keep = ~np.isin(ids, gone)
            if keep.any():
                runs.append((fp, ids) if keep.all() else (fp[keep], ids[keep]))
        self._runs = runs
        if self._pending:
            dropped = set(gone.tolist())
            pending: dict[int, list[int]] = {}
            pairs = 0
            for key, owners in self._pending.items():
                kept = [i for i in owners if i not in dropped]
                if kept:
                    pending[key] = kept
                    pairs += len(kept)
            self._pending, self._pending_pairs = pending, pairs

    def _flush(self) -> None:
        fp = np.fromiter(
            (fp for fp, owners in self._pending.items() for _ in owners),
            dtype=np.uint32,
            count=self._pending_pairs,
        )
        owners = np.fromiter(
            (i for ids in self._pending.values() for i in ids),
            dtype=np.uint32,
            count=self._pending_pairs,
        )
        self._pending, self._pending_pairs = {}, 0
        self._push(fp, owners)

    def _push(self, fp: np.ndarray[Any, Any], owners: np.ndarray[Any, Any]) -> None:
        order = np.argsort(fp, kind="stable")
        self._runs.append((fp[order], owners[order]))
        while len(self._runs) > 1 and self._runs[-1][0].size * 8 >= self._runs[-2][0].size:
            (small_fp, small_ids), (big_fp, big_ids) = self._runs.pop(), self._runs.pop()
            # One pass: each pair of the smaller run goes after its equals in the larger.
            at = np.searchsorted(big_fp, small_fp, side="right")
            self._runs.append((np.insert(big_fp, at, small_fp), np.insert(big_ids, at, small_ids)))


class NearIndex:
    """The band index of every data type, for one band layout, kept in step with the
    database through ``index_log``."""

    def __init__(self, layout: dedup.Banding) -> None:
        self.layout = layout
        self.samples = 0  # samples added (less those taken out)
        self._types: dict[str, BandIndex] = {}
        self._seen = 0  # the last index_log entry applied
        self.resigned = 0  # stored signatures computed again while loading (a new scheme)

    def of(self, datatype: str) -> BandIndex:
        index = self._types.get(datatype)
        if index is None:
            index = self._types[datatype] = BandIndex()
        return index

    @property
    def nbytes(self) -> int:
        return sum(index.nbytes for index in self._types.values())

    def fingerprints(self, signatures: Sequence[bytes]) -> np.ndarray[Any, Any]:
        """The (samples x bands) fingerprints of stored signatures."""
        matrix = np.frombuffer(b"".join(signatures), dtype=np.uint32).reshape(
            len(signatures), dedup.NUM_PERM
        )
        return dedup.band_fingerprints(matrix, self.layout)

    @classmethod
    def load(cls, conn: sqlite3.Connection, layout: dedup.Banding) -> NearIndex:
        """Every accepted sample with a signature, from one consistent read of the database
        (after signing again, once, what an earlier signature scheme signed)."""
        index = cls(layout)
        index.resigned = resign_stale(conn)
        conn.execute("BEGIN")
        try:
            (seen,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM index_log").fetchone()
            cursor = conn.execute(
                "SELECT s.datatype, s.sample_id, s.signature FROM signatures s"
                " JOIN samples x ON x.id = s.sample_id WHERE x.status = 'accepted'"
            )
            while rows := cursor.fetchmany(_LOAD_CHUNK):
                index._extend(rows)
        finally:
            conn.execute("COMMIT")
        index._seen = int(seen)
        return index

    def _extend(self, rows: Sequence[tuple[str, int, bytes]]) -> None:
        by_type: dict[str, list[tuple[int, bytes]]] = {}
        for datatype, sample_id, blob in rows:
            by_type.setdefault(datatype, []).append((sample_id, blob))
        for datatype, pairs in by_type.items():
            ids = [sample_id for sample_id, _ in pairs]
            self.of(datatype).extend(ids, self.fingerprints([blob for _, blob in pairs]))
            self.samples += len(ids)

    def catch_up(self, conn: sqlite3.Connection) -> int:
        """Apply what other connections changed since the last call (inside a write
        transaction, so no later change can slip in before this one's own); returns how many
        samples that touched."""
        rows = conn.execute(
            "SELECT seq, sample_id FROM index_log WHERE seq > ? ORDER BY seq", (self._seen,)
        ).fetchall()
        if not rows:
            return 0
        touched = sorted({int(sample_id) for _, sample_id in rows})
        for index in self._types.values():
            index.discard(touched)
        current: list[tuple[str, int, bytes]] = []
        for start in range(0, len(touched), 500):
            chunk = touched[start : start + 500]
            current += conn.execute(
                "SELECT s.datatype, s.sample_id, s.signature FROM signatures s"
                " JOIN samples x ON x.id = s.sample_id WHERE x.status = 'accepted'"
                f" AND s.sample_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
        self._extend(current)
        self._seen = int(rows[-1][0])
        self.samples = sum(len(i) for i in self._types.values()) // self.layout.bands
        return len(touched)

    def log_position(self, conn: sqlite3.Connection) -> int:
        """The last index_log entry now (read before a commit, so the commit's own entries,
        already applied, are not replayed)."""
        (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM index_log").fetchone()
        return int(seq)

    def committed(
        self, additions: Sequence[tuple[str, int, Sequence[int]]], log_position: int
    ) -> None:
        """Apply a committed transaction's own additions (data type, sample id,
        fingerprints) and move past its log entries."""
        for datatype, sample_id, fingerprints in additions:
            self.of(datatype).add(sample_id, fingerprints)
        self.samples += len(additions)
        self._seen = max(self._seen, log_position)


def resign_stale(conn: sqlite3.Connection) -> int:
    """Compute every stored signature again from its sample when they were made with another
    scheme than ``dedup.SIGNATURE_SCHEME`` (their values would not be comparable), a chunk per
    transaction (so a review or another writer waits seconds at most), and record the scheme
    after the last; returns how many were signed again. Interrupted, it starts over at the
    next start (signing a sample again from its own payload changes nothing)."""
    if _scheme(conn) == dedup.SIGNATURE_SCHEME:  # the usual start: no write lock taken
        return 0
    count, last = 0, 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _scheme(conn) == dedup.SIGNATURE_SCHEME:  # done, maybe by another process
                conn.execute("COMMIT")
                return count
            rows = conn.execute(
                "SELECT s.sample_id, s.datatype, x.payload FROM signatures s"
                " JOIN samples x ON x.id = s.sample_id WHERE s.sample_id > ?"
                " ORDER BY s.sample_id LIMIT ?",
                (last, _RESIGN_CHUNK),
            ).fetchall()
            if rows:
                blobs = dedup.signatures_bytes([prose_of(t, payload) for _, t, payload in rows])
                conn.executemany(
                    "UPDATE signatures SET signature = ? WHERE sample_id = ?",
                    [(blob, i) for (i, _, _), blob in zip(rows, blobs, strict=True)],
                )
                count += len(rows)
                last = int(rows[-1][0])
            else:
                conn.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (SCHEME_SETTING, dedup.SIGNATURE_SCHEME),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _scheme(conn: sqlite3.Connection) -> str | None:
    """The signature scheme the settings record, or None."""
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (SCHEME_SETTING,)).fetchone()
    return None if row is None else str(row[0])
