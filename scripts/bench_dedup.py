"""SPEC §9.4: the online near-duplicate check per sample with 100,000 samples indexed, and the
time to rebuild the index of 100,000 from the stored signatures (what every start does, and a
changed ``dedup.cluster_threshold``).

A real SQLite file with the service's schema is filled with ``--indexed`` accepted samples of
one data type (the worst case: every indexed sample in the type that is checked), each with
its MinHash signature, as the writer stores them; the in-memory index is built from them as
the service builds it at start. Their prose is 120-220 words
drawn from the fake Ollama's word list; one in ten is a copy of an earlier one with a tenth
or a fiftieth of its words changed, so lookups find candidates, near duplicates are found and
clusters form.

Then ``--checks`` new samples (one in ten a near-copy of an indexed one) go through the check
as the service does it, in batches of 25:

- **signature**: the MinHash signatures of a batch's prose, computed beside the other checks
  (``domain/rows.py rows_of``), on the event loop or in a check worker;
- **lookup + store**: what the writer's ``commit_batch`` spends on near-duplicates (band
  fingerprints, the candidates' lookup in the index and comparison with their stored
  signatures, the signature row written, the index updated): the time of a
  commit with the check less that of a commit of as many samples without it (no signatures),
  alternating batch by batch, with ``synchronous = OFF`` while it is measured so that fsync's
  time (the same for both) does not drown the difference. The index grows by the checked
  samples (2% over 2,000).
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from bench_common import load_text

from gen_service.adapters.store import Store
from gen_service.adapters.store import batches as store_batches
from gen_service.adapters.store.batches import NearDuplicates
from gen_service.adapters.store.core import WRITER_CACHE_KIB
from gen_service.adapters.store.near_index import SCHEME_SETTING, NearIndex
from gen_service.domain import dedup
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.testing.fake_ollama._text import WORDS

DATATYPE = "emotional_authenticity"
NEAR = NearDuplicates(threshold=0.85, cluster_threshold=0.5)  # the production [dedup]
BATCH = 25


def prose(rng: random.Random) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(120, 220))]


def near_copy(rng: random.Random, words: list[str]) -> list[str]:
    """``words`` with 2% (a near duplicate, Jaccard ~0.9) or 10% (a cluster mate, ~0.6)
    of them changed."""
    copy = list(words)
    for i in rng.sample(range(len(copy)), len(copy) // rng.choice((10, 50))):
        copy[i] = rng.choice(WORDS)
    return copy


def _open(db: Path) -> sqlite3.Connection:
    async def create() -> None:
        async with Store.open(db):
            pass

    anyio.run(create)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")  # as the service's writer
    return conn


def fill(conn: sqlite3.Connection, count: int, rng: random.Random) -> list[list[str]]:
    """``count`` accepted samples with signatures, in one transaction."""
    texts: list[list[str]] = []
    conn.execute("BEGIN")
    batch_id: int | None = None
    for i in range(count):
        if i % BATCH == 0:
            batch_id = conn.execute(
                "INSERT INTO batches (datatype, model, status, attempts, requested, created_at,"
                " day) VALUES (?, 'm', 'ok', 1, ?, '2026-11-26T00:00:00.000+00:00',"
                " '2026-11-26')",
                (DATATYPE, BATCH),
            ).lastrowid
        words = near_copy(rng, rng.choice(texts)) if texts and rng.random() < 0.1 else prose(rng)
        texts.append(words)
        text = " ".join(words)
        sample_id = conn.execute(
            "INSERT INTO samples (batch_id, datatype, status, content_hash, payload, created_at,"
            " day) VALUES (?, ?, 'accepted', ?, '{}', '2026-11-26T00:00:00.000+00:00',"
            " '2026-11-26')",
            (batch_id, DATATYPE, f"h{i}"),
        ).lastrowid
        conn.execute("UPDATE samples SET cluster_id = id WHERE id = ?", (sample_id,))
        blob = dedup.signature_bytes(text)
        conn.execute(
            "INSERT INTO signatures (sample_id, datatype, signature) VALUES (?, ?, ?)",
            (sample_id, DATATYPE, blob),
        )
    # Signed with today's scheme, as the service's own signatures are (the index would sign
    # them again from their payloads otherwise).
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (SCHEME_SETTING, dedup.SIGNATURE_SCHEME),
    )
    conn.execute("COMMIT")
    return texts


def _sign(texts: list[str]) -> list[bytes]:
    """The signatures of a batch's texts, as the service computes them (one batch at once
    where dedup offers that, else one text at a time)."""
    batch_sign = getattr(dedup, "signatures_bytes", None)
    if batch_sign is not None:
        return list(batch_sign(texts))
    return [dedup.signature_bytes(text) for text in texts]


def _record(
    texts: list[str], signatures: list[bytes] | None, serial: int, rng_tag: int
) -> BatchRecord:
    return BatchRecord(
        datatype=DATATYPE,
        model="m",
        phase="bench",
        status="ok",
        attempts=1,
        requested=len(texts),
        temperature=0.9,
        num_predict=6000,
        seed=0,
        created_at="2026-11-26T00:00:00.000+00:00",
        day="2026-11-26",
        samples=tuple(
            SampleRow(
                datatype=DATATYPE,
                status="accepted",
                payload_json="{}",
                content_hash=f"check-{serial}-{i}-{rng_tag}",
                item_index=i,
                signature=None if signatures is None else signatures[i],
            )
            for i in range(len(texts))
        ),
    )


def check(
    conn: sqlite3.Connection,
    index: NearIndex,
    texts: list[list[str]],
    count: int,
    rng: random.Random,
) -> tuple[list[float], list[float], int]:
    """Commit ``count`` new samples in batches of 25 twice over, through the writer's own
    ``commit_batch``: once with near-duplicates checked (signatures computed, looked up,
    stored), once without (no signatures), alternating batch by batch. Per batch: seconds to
    sign it, and the commit's extra seconds with the check; and the near duplicates found."""

    def text() -> str:
        return " ".join(near_copy(rng, rng.choice(texts)) if rng.random() < 0.1 else prose(rng))

    signing: list[float] = []
    extra: list[float] = []
    duplicates = 0
    for serial in range(0, count, BATCH):
        tag = rng.getrandbits(64)  # a new hash per sample: exact copies are not what is timed
        with_check = [text() for _ in range(BATCH)]
        without = [text() for _ in range(BATCH)]
        t0 = time.perf_counter()
        blobs = _sign(with_check)
        t1 = time.perf_counter()
        result = store_batches.commit_batch(
            conn, None, _record(with_check, blobs, serial, tag), NEAR, index
        )
        t2 = time.perf_counter()
        store_batches.commit_batch(conn, None, _record(without, None, -serial - 1, tag), None)
        t3 = time.perf_counter()
        duplicates += result.duplicates
        signing.append(t1 - t0)
        extra.append((t2 - t1) - (t3 - t2))
    return signing, extra, duplicates


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    mean, median = statistics.fmean(values), statistics.median(values)
    return f"mean {mean * 1e3:.3f} ms, median {median * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms"


def _load(conn: sqlite3.Connection) -> tuple[NearIndex, float]:
    started = time.perf_counter()
    index = NearIndex.load(conn, NEAR.layout)
    return index, time.perf_counter() - started


def bench_dedup(indexed: int, checks: int, rounds: int) -> None:
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "dedup.db"
        conn = _open(db)
        started = time.perf_counter()
        texts = fill(conn, indexed, rng)
        filled = time.perf_counter() - started
        index, seconds = _load(conn)
        print(
            f"stored {indexed:,} samples of one type with their signatures in {filled:.1f} s;"
            f" database {db.stat().st_size / 1e6:.0f} MB; index built in {seconds:.1f} s"
            f" ({NEAR.layout.bands} bands x {NEAR.layout.rows} rows, {len(index.of(DATATYPE)):,}"
            f" fingerprints, {index.nbytes / 1e6:.1f} MB); {load_text()}"
        )
        # The check's own work, not the disk's: no fsync per commit while it is measured.
        conn.execute("PRAGMA synchronous = OFF")
        totals = []
        for r in range(rounds):
            signing, extra, dups = check(conn, index, texts, checks, rng)
            per_sample = [(a + b) / BATCH for a, b in zip(signing, extra, strict=True)]
            totals.append(statistics.fmean(per_sample))
            print(
                f"round {r + 1}: {len(signing) * BATCH:,} samples checked in batches of {BATCH},"
                f" {dups:,} near duplicates found; {load_text()}"
            )
            print(f"    signature per sample        : {_ms([s / BATCH for s in signing])}")
            print(f"    lookup + store per sample   : {_ms([e / BATCH for e in extra])}")
            print(f"    the whole check per sample  : {_ms(per_sample)}")
        conn.execute("PRAGMA synchronous = FULL")
        print(
            f"the check with {indexed:,} indexed: median of {rounds} rounds' means"
            f" {statistics.median(totals) * 1e3:.3f} ms/sample (min {min(totals) * 1e3:.3f},"
            f" max {max(totals) * 1e3:.3f}; target <= 0.3 ms)"
        )
        rebuilds = []
        for _ in range(3):
            index, seconds = _load(conn)
            rebuilds.append(seconds)
            print(
                f"index rebuilt from the stored signatures: {index.samples:,} samples in"
                f" {seconds:.2f} s, {index.nbytes / 1e6:.1f} MB; {load_text()}"
            )
        print(f"rebuild of {index.samples:,}: median {statistics.median(rebuilds):.2f} s")
        conn.close()
