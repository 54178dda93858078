"""The writer task: batches waiting together share a transaction, and order is kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from gen_service.adapters.store import Store
from gen_service.config import load_config
from gen_service.domain.records import BatchRecord, CommitResult, SampleRow
from gen_service.service import writer
from gen_service.service.board import ProgressBoard
from gen_service.service.writer import (
    MOST_GROUPED,
    PendingBatch,
    PendingWrite,
    WriteContext,
    write_batches,
)

pytestmark = pytest.mark.anyio


class CountingStore(Store):
    """A real store that remembers how many batches each of its transactions held."""

    transactions: list[int]

    async def commit_batches(
        self, run_id: int | None, records: Sequence[BatchRecord]
    ) -> list[CommitResult]:
        self.transactions.append(len(records))
        return await super().commit_batches(run_id, records)


@dataclass(slots=True)
class Marker:
    """A write that is not a batch (as the judge's verdicts are): it records when it ran."""

    seen: list[str]
    committed: anyio.Event = field(default_factory=anyio.Event)

    async def commit(self, ctx: WriteContext) -> None:
        self.seen.append(f"marker after {sum(ctx.store.transactions)} batches")  # type: ignore[attr-defined]


def pending(content_hash: str) -> PendingBatch:
    row = SampleRow("personality_traits", "accepted", "{}", content_hash=content_hash)
    return PendingBatch(
        BatchRecord(
            datatype="personality_traits", model="m", phase="p", status="ok", attempts=1,
            requested=1, temperature=0.8, num_predict=100, seed=1,
            created_at="2026-11-25T10:00:00.000+00:00", day="2026-11-25", samples=(row,),
        )
    )  # fmt: skip


async def test_waiting_batches_share_a_transaction_and_a_write_between_them_keeps_its_place(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    """Batches already queued when the writer takes one are committed in one transaction (at
    most MOST_GROUPED), each acknowledged; a write that is not a batch ends the group and
    runs in its place."""
    cfg = load_config(write_config())
    seen: list[str] = []
    many = [pending(f"h{i}") for i in range(MOST_GROUPED + 3)]
    writes: list[PendingWrite] = [pending("a"), pending("b"), Marker(seen), *many]
    tx, rx = anyio.create_memory_object_stream[PendingWrite](max_buffer_size=len(writes))
    async with CountingStore.open(tmp_path / "w.db") as store:
        assert isinstance(store, CountingStore)
        store.transactions = []
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        board = ProgressBoard(cfg, {}, "2026-11-25")
        async with tx:
            for write in writes:
                tx.send_nowait(write)
        await write_batches(WriteContext(store, run.run_id, board, dt.UTC), rx)
        counts = await store.type_counts("2026-11-25")
    assert store.transactions == [2, MOST_GROUPED, 3]
    assert seen == ["marker after 2 batches"]
    assert all(w.committed.is_set() for w in writes)
    assert counts["personality_traits"].accepted == len(writes) - 1
    assert board.tally("personality_traits").accepted == len(writes) - 1


class TrimCountingStore(Store):
    """A real store that counts the writer's idle WAL trims."""

    trims: int = 0

    async def trim_wal(self) -> int | None:
        self.trims += 1
        return await super().trim_wal()


async def test_an_idle_writer_trims_the_wal_and_a_busy_one_does_not(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to write for IDLE_TRIM_S: the writer asks the store to cut back its WAL, and
    goes on committing what comes next; a stream of writes never waits that long."""
    monkeypatch.setattr(writer, "IDLE_TRIM_S", 0.05)
    cfg = load_config(write_config())
    tx, rx = anyio.create_memory_object_stream[PendingWrite](max_buffer_size=4)
    async with TrimCountingStore.open(tmp_path / "w.db") as store:
        assert isinstance(store, TrimCountingStore)
        run = await store.start_run(version="t", config_path="c", mode="sequential")
        board = ProgressBoard(cfg, {}, "2026-11-25")
        async with anyio.create_task_group() as tg:
            tg.start_soon(write_batches, WriteContext(store, run.run_id, board, dt.UTC), rx)
            async with tx:
                first = pending("first")
                await tx.send(first)
                await first.committed.wait()
                assert store.trims == 0
                await anyio.sleep(0.3)  # idle: trims
                idle_trims = store.trims
                later = pending("later")
                await tx.send(later)
                await later.committed.wait()
        counts = await store.type_counts("2026-11-25")
    assert idle_trims >= 2
    assert counts["personality_traits"].accepted == 2
