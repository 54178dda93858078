"""Near-duplicates and clusters, decided in the store's commit against real SQLite files."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasketch import MinHash

from gen_service.adapters.store import Store
from gen_service.adapters.store.batches import NearDuplicates
from gen_service.adapters.store.quality import JudgmentRow
from gen_service.adapters.store.review import decide, open_for_review
from gen_service.domain import dedup
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.errors import StoreError

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "prompts" / "examples"
NEAR = NearDuplicates(threshold=0.85, cluster_threshold=0.5)
TYPE = "emotional_authenticity"


def examples() -> list[dict[str, Any]]:
    lines = (EXAMPLES / f"{TYPE}.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def prose(payload: dict[str, Any]) -> str:
    spec = REGISTRY[TYPE]
    text: str = spec.text_for_dedup(spec.model.model_validate(payload))
    return text


def row(payload: dict[str, Any]) -> SampleRow:
    text = prose(payload)
    return SampleRow(
        TYPE, "accepted", json.dumps(payload), content_hash=dedup.content_hash(text),
        signature=dedup.signature_bytes(text),
    )  # fmt: skip


def batch(*rows: SampleRow) -> BatchRecord:
    return BatchRecord(
        datatype=TYPE, model="m", phase="p", status="ok", attempts=1, requested=len(rows),
        temperature=0.8, num_predict=100, seed=1, created_at="2026-11-25T10:00:00.000+00:00",
        day="2026-11-25", samples=rows,
    )  # fmt: skip


def a_few_words_changed(payload: dict[str, Any]) -> dict[str, Any]:
    """The same sample with a handful of words swapped, as a model repeating itself does."""
    copy = json.loads(json.dumps(payload))
    copy["behavior"] = copy["behavior"].replace("the", "that", 1)
    copy["dialogue"] = copy["dialogue"].replace(".", "!", 1)
    copy["internal_thought"] = "Honestly, " + copy["internal_thought"]
    return copy


def partly_rewritten(payload: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """A related sample: its dialogue written anew (taken from another). Similar enough (about
    0.7) that LSH finds the pair all but surely; at 0.5 it would find it one time in two."""
    copy = json.loads(json.dumps(payload))
    copy["dialogue"] = other["dialogue"]
    return copy


def samples(db: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM samples ORDER BY id")]
    conn.close()
    return rows


def test_signatures_estimate_similarity() -> None:
    """Identical prose has similarity 1, a few changed words stays above the duplicate bar,
    different samples are far below it."""
    first, second = examples()[0], examples()[1]
    a = dedup.signature(prose(first))
    assert dedup.jaccard(a, dedup.signature(prose(first))) == 1.0
    assert dedup.jaccard(a, dedup.signature(prose(a_few_words_changed(first)))) >= 0.85
    assert dedup.jaccard(a, dedup.signature(prose(second))) < 0.3
    layout = dedup.banding(0.5)
    assert layout.bands * layout.rows <= dedup.NUM_PERM
    prints = dedup.band_fingerprints(a, layout)
    assert prints.shape == (1, layout.bands) and prints.dtype == np.uint32
    # A band's fingerprint depends on that band's values only, and on its position.
    b = a.copy()
    b[0] += 1  # changes band 0 only
    changed = dedup.band_fingerprints(b, layout)[0] != prints[0]
    assert changed.tolist() == [True] + [False] * (layout.bands - 1)
    same = np.tile(a[: layout.rows], dedup.NUM_PERM // layout.rows + 1)[: dedup.NUM_PERM]
    assert len(set(dedup.band_fingerprints(same, layout)[0].tolist())) == layout.bands


async def test_a_near_copy_is_a_duplicate_of_what_it_copies(tmp_path: Path) -> None:
    """A sample with a few words changed is stored as `duplicate` of the accepted one, also
    later in the same batch; an unrelated sample founds its own cluster."""
    first, second = examples()[0], examples()[1]
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        result = await store.commit_batch(None, batch(row(first), row(a_few_words_changed(first))))
        assert (result.accepted, result.duplicates) == (1, 1)
        await store.commit_batch(None, batch(row(second)))
    rows = samples(db)
    assert rows[1]["status"] == "duplicate" and rows[1]["duplicate_of"] == rows[0]["id"]
    assert "near duplicate of sample" in rows[1]["reason"]
    assert rows[0]["cluster_id"] == rows[0]["id"]
    assert rows[2]["cluster_id"] == rows[2]["id"]  # unrelated: its own cluster


def tied_signatures(common: int) -> tuple[bytes, bytes, bytes]:
    """Signatures a and b that agree on their first ``common`` values, and c that agrees
    with both there and, of the rest, with a on one half and with b on the other: c is
    exactly as similar to a as to b."""
    rng = np.random.default_rng(common)
    a = rng.integers(0, 2**32, dedup.NUM_PERM, dtype=np.uint32)
    b = a.copy()
    b[common:] = a[common:] + 1  # differs everywhere else
    c = b.copy()
    c[common : common + (dedup.NUM_PERM - common) // 2] = a[
        common : common + (dedup.NUM_PERM - common) // 2
    ]
    return a.tobytes(), b.tobytes(), c.tobytes()


def signed(name: str, signature: bytes) -> SampleRow:
    return SampleRow(TYPE, "accepted", "{}", content_hash=name, signature=signature)


async def test_a_tie_goes_to_the_earliest_candidate(tmp_path: Path) -> None:
    """Between equally similar accepted samples, a near-copy points at the earliest, stored or
    earlier in its own batch, and a related sample joins the earliest one's cluster (what a
    lookup in id order finds)."""
    a, b, c = tied_signatures(90)  # c: Jaccard 0.85 with a and with b; a-b: 0.70
    x, y, z = tied_signatures(40)  # z: Jaccard 0.66 with x and with y; x-y: 0.31
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        first = await store.commit_batch(None, batch(signed("a", a), signed("x", x)))
        second = await store.commit_batch(
            None, batch(signed("b", b), signed("c", c), signed("y", y), signed("z", z))
        )
    assert (first.accepted, second.accepted, second.duplicates) == (2, 3, 1)
    by_hash = {r["content_hash"]: r for r in samples(db)}
    assert by_hash["b"]["cluster_id"] == by_hash["a"]["id"]  # 0.70: related, not a copy
    assert by_hash["c"]["duplicate_of"] == by_hash["a"]["id"]
    assert by_hash["y"]["cluster_id"] == by_hash["y"]["id"]  # 0.31: unrelated
    assert by_hash["z"]["status"] == "accepted"
    assert by_hash["z"]["cluster_id"] == by_hash["x"]["cluster_id"] == by_hash["x"]["id"]


async def test_a_related_sample_joins_the_cluster(tmp_path: Path) -> None:
    """A sample similar enough to share a cluster but not a copy is accepted into the
    cluster of the sample it resembles."""
    first, second = examples()[0], examples()[1]
    related = partly_rewritten(first, second)
    similarity = dedup.jaccard(dedup.signature(prose(first)), dedup.signature(prose(related)))
    assert 0.5 <= similarity < 0.85, similarity
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        await store.commit_batch(None, batch(row(first)))
        result = await store.commit_batch(None, batch(row(related)))
        assert result.accepted == 1
    rows = samples(db)
    assert rows[1]["status"] == "accepted" and rows[1]["cluster_id"] == rows[0]["id"]


async def test_the_index_survives_a_restart(tmp_path: Path) -> None:
    """The signatures are stored: after reopening the database the index is rebuilt from
    them and a near-copy is still caught."""
    first = examples()[0]
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        assert await store.use_near_duplicates(NEAR) == 0  # an empty index
        await store.commit_batch(None, batch(row(first)))
        assert await store.use_near_duplicates(NEAR) is None  # the same layout: kept
    async with Store.open(db) as store:
        assert await store.use_near_duplicates(NEAR) == 1  # rebuilt at start
        result = await store.commit_batch(None, batch(row(a_few_words_changed(first))))
    assert result.duplicates == 1


async def test_a_review_in_another_process_reaches_a_running_index(tmp_path: Path) -> None:
    """A flagged batch accepted by `gen-service review` (another connection, while the
    service runs) is back in the running service's index at its next commit; a rejected one
    stays out."""
    first, second = examples()[0], examples()[1]
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        kept = await store.commit_batch(None, batch(row(first)))
        dropped = await store.commit_batch(None, batch(row(second)))
        for committed in (kept, dropped):
            await store.commit_judgments(
                committed.batch_id, [], mean=0.4, flagged=True, reason="low", day="d"
            )
        conn = open_for_review(db)
        decide(conn, kept.batch_id, "accepted", None, "2026-11-25T12:00:00.000+00:00")
        decide(conn, dropped.batch_id, "rejected", None, "2026-11-25T12:00:00.000+00:00")
        conn.close()
        again = await store.commit_batch(
            None, batch(row(a_few_words_changed(first)), row(a_few_words_changed(second)))
        )
    assert (again.duplicates, again.accepted) == (1, 1)
    rows = samples(db)
    assert rows[2]["duplicate_of"] == rows[0]["id"] and rows[3]["status"] == "accepted"


async def test_a_commit_that_fails_leaves_the_index_as_it_was(tmp_path: Path) -> None:
    """A rolled-back commit's samples never join the index: their ids are given again to the
    next commit's samples, which must not be taken for copies of what was never stored."""
    first, second = examples()[0], examples()[1]
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        broken = dataclasses.replace(batch(row(first)), status=None)  # NOT NULL: refused
        with pytest.raises(StoreError):
            await store.commit_batch(None, broken)
        assert store.near_index is not None and store.near_index.samples == 0
        result = await store.commit_batch(None, batch(row(second), row(first)))
    assert (result.accepted, result.duplicates) == (2, 0)


async def test_flagged_samples_leave_the_index_and_a_review_puts_them_back(
    tmp_path: Path,
) -> None:
    """A flagged batch's samples no longer make their replacements duplicates; a review that
    accepts the batch puts them back in the index."""
    first = examples()[0]
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        committed = await store.commit_batch(None, batch(row(first)))
        sample_id = samples(db)[0]["id"]
        judgment = JudgmentRow(
            sample_id, "j", 0.4, dict.fromkeys(("authenticity", "consistency", "complexity",
            "usability"), 0.4), None, None, None, ("flat",), "Be specific.",
        )  # fmt: skip
        await store.commit_judgments(
            committed.batch_id, [judgment], mean=0.4, flagged=True, reason="low", day="d"
        )
        replacement = await store.commit_batch(None, batch(row(a_few_words_changed(first))))
        assert replacement.accepted == 1, "the flagged original must not block its replacement"
    conn = open_for_review(db)
    decide(conn, committed.batch_id, "accepted", None, "2026-11-25T12:00:00.000+00:00")
    conn.close()
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        again = await store.commit_batch(None, batch(row(a_few_words_changed(first))))
    assert again.duplicates == 1


async def test_a_new_cluster_threshold_rebuilds_the_index(tmp_path: Path) -> None:
    """Changing the cluster threshold rebuilds the index for the new band layout from the
    stored signatures, and near-copies are still caught afterwards."""
    rows = [row(e) for e in examples()[:5]]
    db = tmp_path / "s.db"
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        await store.commit_batch(None, batch(*rows))
        looser = NearDuplicates(threshold=0.85, cluster_threshold=0.3)
        assert await store.use_near_duplicates(looser) == 5
        assert store.near_index is not None
        assert store.near_index.layout == dedup.banding(0.3) != dedup.banding(0.5)
        result = await store.commit_batch(None, batch(row(a_few_words_changed(examples()[2]))))
    assert result.duplicates == 1


async def test_the_sweep_signs_older_samples_and_finds_their_copies(tmp_path: Path) -> None:
    """Samples committed without near-duplicate checks (an older database) get signatures
    from the process phase's sweep; a near-copy among them becomes a duplicate of the earlier
    one, the others get their clusters and join the index."""
    from gen_service.service.sweep import signature_of

    first, second = examples()[0], examples()[1]
    db = tmp_path / "s.db"
    async with Store.open(db) as store:  # near-duplicates off: as before they existed
        plain = [
            SampleRow(TYPE, "accepted", json.dumps(p), content_hash=dedup.content_hash(prose(p)))
            for p in (first, second, a_few_words_changed(first))
        ]
        await store.commit_batch(None, batch(*plain))
        assert {r["status"] for r in samples(db)} == {"accepted"}
        await store.use_near_duplicates(NEAR)
        done = await store.sweep_near_duplicates(2, signature_of)
        assert (done.examined, done.duplicates) == (2, 0)
        done = await store.sweep_near_duplicates(200, signature_of)
        assert (done.examined, done.duplicates) == (1, 1)
        assert (await store.sweep_near_duplicates(200, signature_of)).examined == 0
        later = await store.commit_batch(None, batch(row(a_few_words_changed(second))))
    rows = samples(db)
    assert rows[2]["status"] == "duplicate" and rows[2]["duplicate_of"] == rows[0]["id"]
    assert rows[0]["cluster_id"] == rows[0]["id"] and rows[1]["cluster_id"] == rows[1]["id"]
    assert later.duplicates == 1  # the swept samples are in the index


async def test_a_schema_6_database_keeps_its_index(tmp_path: Path) -> None:
    """A database whose bands were stored in SQLite (schema 6) migrates: the band table goes,
    its signatures (made with SHA-1, not comparable with today's) are signed again from their
    samples, and the index rebuilt from them still catches a near-copy."""
    from gen_service.adapters.store.schema import MIGRATIONS

    first = examples()[0]
    db = tmp_path / "s.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for migration in MIGRATIONS[:6]:
        conn.executescript(migration)
    conn.execute("PRAGMA user_version = 6")
    batch_id = conn.execute(
        "INSERT INTO batches (datatype, model, status, attempts, requested, created_at, day)"
        " VALUES (?, 'm', 'ok', 1, 1, '2026-11-25T10:00:00.000+00:00', '2026-11-25')",
        (TYPE,),
    ).lastrowid
    sample = row(first)
    sample_id = conn.execute(
        "INSERT INTO samples (batch_id, datatype, status, content_hash, payload, created_at, day)"
        " VALUES (?, ?, 'accepted', ?, ?, '2026-11-25T10:00:00.000+00:00', '2026-11-25')",
        (batch_id, TYPE, sample.content_hash, sample.payload_json),
    ).lastrowid
    old = MinHash(num_perm=dedup.NUM_PERM, seed=dedup.SEED)  # datasketch's default: SHA-1
    old.update_batch(dedup.shingles(prose(first)))
    conn.execute(
        "INSERT INTO signatures (sample_id, datatype, signature) VALUES (?, ?, ?)",
        (sample_id, TYPE, old.hashvalues.astype(np.uint32).tobytes()),
    )
    conn.execute("INSERT INTO lsh_bands VALUES (?, 1, ?)", (TYPE, sample_id))
    conn.execute("INSERT INTO settings (key, value) VALUES ('lsh_banding', '128:25x5')")
    conn.close()
    async with Store.open(db) as store:
        assert await store.use_near_duplicates(NEAR) == 1
        assert store.near_index is not None and store.near_index.resigned == 1
        result = await store.commit_batch(None, batch(row(a_few_words_changed(first))))
    assert result.duplicates == 1
    async with Store.open(db) as store:
        await store.use_near_duplicates(NEAR)
        assert store.near_index is not None and store.near_index.resigned == 0  # done once
    conn = sqlite3.connect(db)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    settings = conn.execute("SELECT key FROM settings WHERE key = 'lsh_banding'").fetchall()
    conn.close()
    assert "lsh_bands" not in tables and "index_log" in tables and settings == []


async def test_another_writers_samples_reach_a_running_index(tmp_path: Path) -> None:
    """Samples committed by a second writer (another process on the same database) are in
    the first one's index at its next commit; one whose signature was deleted by hand is not."""
    first, second = examples()[0], examples()[1]
    db = tmp_path / "s.db"
    async with Store.open(db) as store, Store.open(db) as other:
        await store.use_near_duplicates(NEAR)
        await other.use_near_duplicates(NEAR)
        await other.commit_batch(None, batch(row(first), row(second)))
        conn = sqlite3.connect(db, isolation_level=None)
        gone = samples(db)[1]["id"]
        conn.execute("DELETE FROM signatures WHERE sample_id = ?", (gone,))
        conn.close()
        result = await store.commit_batch(
            None, batch(row(a_few_words_changed(first)), row(a_few_words_changed(second)))
        )
    assert (result.duplicates, result.accepted) == (1, 1)
