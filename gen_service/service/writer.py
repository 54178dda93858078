"""The one writer: every write of the running service is committed by this task, in the order
the writes arrive.

A write is a :class:`PendingWrite`: a batch of samples from a producer, or the judge's verdicts
on a batch. Each says what it commits and what it changes on the progress board; its
``committed`` event is set once it is in the database, so a producer counts its items as in
flight until then and does not ask again for what is already on its way.

Each write is one transaction, except that batches already waiting in the queue when the
writer takes one are committed together (:class:`BatchGroup`, up to :data:`MOST_GROUPED`):
each batch is still whole or absent, decided as if committed alone in the same order, and
acknowledged only once its transaction is in. A writer that keeps up commits one batch at a
time; one that falls behind pays a transaction's fixed cost (the WAL sync, the index pages
written) once for several batches instead of for each. With nothing to write for
:data:`IDLE_TRIM_S`, the writer cuts back a WAL that a long reader made grow
(:meth:`Store.trim_wal`), which SQLite itself would do only at the next commit."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from gen_service.adapters.store import Store
from gen_service.adapters.store.core import free_bytes
from gen_service.adapters.store.quality import JudgmentRow
from gen_service.domain.judging import BatchVerdict
from gen_service.domain.records import BatchRecord, CommitResult
from gen_service.errors import StoreError, StoreUnavailable
from gen_service.service.board import ProgressBoard
from gen_service.service.clock import Clock
from gen_service.service.gate import STORE, BackendGate

log = structlog.get_logger("gen_service.writer")

RETRY_INITIAL_S = 1.0  # first wait before committing again to a disk that refused
RETRY_MAX_S = 30.0
REPORT_EVERY_S = 60.0  # store.unavailable is logged once a minute while it lasts
MOST_GROUPED = 16  # waiting batches committed in one transaction, at most
IDLE_TRIM_S = 30.0  # with nothing to write for this long, cut back a grown WAL


class CommitObserver(Protocol):
    """Told of each commit, once per batch or verdict (the /metrics counters): keep it cheap,
    it runs on the writer's path."""

    def batch_committed(self, record: BatchRecord, result: CommitResult) -> None: ...

    def verdicts_committed(
        self, datatype: str, overall: Sequence[float], flagged: bool
    ) -> None: ...


@dataclass(slots=True)
class WriteContext:
    """What every write may touch, and how to behave when the disk refuses writes."""

    store: Store
    run_id: int
    board: ProgressBoard
    tz: dt.tzinfo
    gate: BackendGate | None = None  # closed while the database refuses writes
    on_unavailable: Literal["pause", "exit"] = "pause"
    stopping: anyio.Event | None = None  # the service drains: stop waiting after grace_s
    grace_s: float = 60.0
    observer: CommitObserver | None = None  # the /metrics counters, when the endpoint is on
    clock: Clock | None = None  # the service's clock: how long "idle" is (None: real time)


class PendingWrite(Protocol):
    committed: anyio.Event

    async def commit(self, ctx: WriteContext) -> None:
        """Commit in one transaction, then update the board and log one event."""
        ...


@dataclass(slots=True)
class PendingBatch:
    """A producer's batch on its way to the database."""

    record: BatchRecord
    committed: anyio.Event = field(default_factory=anyio.Event)

    async def commit(self, ctx: WriteContext) -> None:
        await BatchGroup([self]).commit(ctx)

    async def settle(self, ctx: WriteContext, result: CommitResult) -> None:
        """What follows its commit: the board, the metrics, the log."""
        batch = self.record
        new_day = ctx.board.day != batch.day
        ctx.board.record(batch.datatype, batch.day, result, batch.status == "ok")
        if ctx.observer is not None:
            ctx.observer.batch_committed(batch, result)
        if new_day:  # the UTC offset may have changed (DST) with the day
            await ctx.store.refresh_day(ctx.tz)
        log.info(
            "batch.committed",
            batch_id=result.batch_id,
            datatype=batch.datatype,
            model=batch.model,
            phase=batch.phase,
            status=batch.status,
            requested=batch.requested,
            accepted=result.accepted,
            rejected=result.rejected,
            duplicates=result.duplicates,
            attempts=batch.attempts,
            prompt_tokens=batch.prompt_tokens,
            eval_tokens=batch.eval_tokens,
            latency_s=round(batch.latency_s, 3),
            replaces=batch.replaces,
            error=batch.error,
        )


@dataclass(slots=True)
class BatchGroup:
    """Batches that were waiting together, committed in one transaction, in order."""

    batches: list[PendingBatch]
    committed: anyio.Event = field(default_factory=anyio.Event)

    async def commit(self, ctx: WriteContext) -> None:
        results = await ctx.store.commit_batches(ctx.run_id, [b.record for b in self.batches])
        for pending, result in zip(self.batches, results, strict=True):
            await pending.settle(ctx, result)


@dataclass(slots=True)
class PendingVerdicts:
    """The judge's verdicts on one batch, and whether the batch is flagged."""

    batch_id: int
    datatype: str
    judgments: list[JudgmentRow]
    verdict: BatchVerdict
    day: str
    committed: anyio.Event = field(default_factory=anyio.Event)

    async def commit(self, ctx: WriteContext) -> None:
        await commit_verdicts(ctx.store, self, ctx.board)
        if ctx.observer is not None:
            overall = [j.overall for j in self.judgments]
            ctx.observer.verdicts_committed(self.datatype, overall, self.verdict.flagged)


async def commit_verdicts(
    store: Store, verdicts: PendingVerdicts, board: ProgressBoard | None = None
) -> None:
    """Store one batch's verdicts (also used by ``gen-service validate``, which has no
    writer task); a flagged batch's samples stop counting on the board too."""
    v = verdicts.verdict
    outcome = await store.commit_judgments(
        verdicts.batch_id,
        verdicts.judgments,
        mean=v.mean,
        flagged=v.flagged,
        reason=v.reason,
        day=verdicts.day,
    )
    if board is not None and outcome.flagged_samples:
        board.unaccept(outcome.datatype, outcome.day, outcome.flagged_samples)
    (log.warning if v.flagged else log.info)(
        "batch.judged",
        batch_id=verdicts.batch_id,
        datatype=verdicts.datatype,
        judged=len(verdicts.judgments),
        mean=v.mean,
        flagged=v.flagged,
        reason=v.reason,
        samples_flagged=outcome.flagged_samples,
    )


async def write_batches(
    ctx: WriteContext,
    writes: MemoryObjectReceiveStream[PendingWrite],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Commit writes until every sender has closed; then return.

    Runs shielded from cancellation so that what reached the queue is committed even while the
    supervisor is being cancelled (the queue is bounded, so this ends quickly)."""
    task_status.started()
    with anyio.CancelScope(shield=True):
        async with writes:
            taken: PendingWrite | None = None  # received, not yet committed
            while True:
                if taken is None:
                    try:
                        with anyio.move_on_after(_idle_s(ctx.clock)):
                            taken = await writes.receive()
                    except anyio.EndOfStream:
                        return
                    if taken is None:  # idle: a reader that held the WAL may have let go
                        await _trim_wal(ctx.store)
                        continue
                write, taken = _group(taken, writes)
                await _commit(ctx, write, writes)
                for done in write.batches if isinstance(write, BatchGroup) else (write,):
                    done.committed.set()


def _idle_s(clock: Clock | None) -> float:
    """IDLE_TRIM_S of the service's clock, in the event loop's seconds (a scaled clock, as the
    soak benchmark runs, makes them shorter)."""
    if clock is None:
        return IDLE_TRIM_S
    return max(0.01, clock.seconds_until(clock.now() + dt.timedelta(seconds=IDLE_TRIM_S)))


async def _trim_wal(store: Store) -> None:
    """Cut back a WAL that grew while a reader held a read transaction (a failure here is
    only logged: the next commit and the next idle tick go on as usual)."""
    try:
        shrunk = await store.trim_wal()
    except StoreError as exc:
        log.warning("store.wal_trim_failed", error=str(exc))
        return
    if shrunk:
        log.info("store.wal_trimmed", freed_bytes=shrunk)


def _group(
    first: PendingWrite, queue: MemoryObjectReceiveStream[PendingWrite]
) -> tuple[PendingWrite, PendingWrite | None]:
    """The next write: ``first``, with the batches waiting right behind it when it is a batch;
    and a write taken from the queue that is not a batch (it goes next), if any."""
    if not isinstance(first, PendingBatch):
        return first, None
    group = [first]
    while len(group) < MOST_GROUPED:
        try:
            following = queue.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            break
        if not isinstance(following, PendingBatch):
            return BatchGroup(group), following
        group.append(following)
    return BatchGroup(group), None


async def _commit(
    ctx: WriteContext, pending: PendingWrite, queue: MemoryObjectReceiveStream[PendingWrite]
) -> None:
    """Commit one write. While the disk refuses writes (StoreUnavailable), hold it, close the
    gate so producers pause, say so once a minute, and retry with capped backoff; on success
    reopen the gate. With ``on_unavailable = "exit"``, or when a drain outlasts its grace, the
    error ends the service (exit 74) instead."""
    paused_at: float | None = None
    reported = -float("inf")
    delay = RETRY_INITIAL_S
    while True:
        try:
            await pending.commit(ctx)
        except StoreUnavailable as exc:
            if ctx.on_unavailable == "exit" or ctx.gate is None:
                raise
            now = time.monotonic()
            if paused_at is None:
                paused_at = now
                ctx.gate.close(STORE, f"the database refuses writes ({exc.reason}): {exc}")
            if now - reported >= REPORT_EVERY_S:
                reported = now
                log.error(
                    "store.unavailable",
                    path=str(ctx.store.path),
                    reason=exc.reason,
                    free_bytes=free_bytes(ctx.store.path),
                    held_writes=_count(pending) + queue.statistics().current_buffer_used,
                    error=str(exc),
                )
            draining = ctx.stopping is not None and ctx.stopping.is_set()
            if draining and now - paused_at >= ctx.grace_s:
                log.error(
                    "store.unavailable_at_shutdown",
                    lost_writes=_count(pending) + queue.statistics().current_buffer_used,
                    note="these batches were never committed",
                )
                raise
            await anyio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)
            continue
        if paused_at is not None and ctx.gate is not None:
            log.info("store.recovered", paused_s=round(time.monotonic() - paused_at, 1))
            ctx.gate.reopen(STORE)
        return


def _count(write: PendingWrite) -> int:
    return len(write.batches) if isinstance(write, BatchGroup) else 1
