"""The one writer: every batch is committed by this task, in one transaction each."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from gen_service.adapters.store import Store
from gen_service.domain.records import BatchRecord
from gen_service.service.board import ProgressBoard

log = structlog.get_logger("gen_service.writer")


@dataclass(slots=True)
class PendingBatch:
    """A batch on its way to the writer; ``committed`` is set once it is in the database, so
    the producer counts its items as in flight until then and never overshoots a target."""

    record: BatchRecord
    committed: anyio.Event = field(default_factory=anyio.Event)


async def write_batches(
    store: Store,
    run_id: int,
    batches: MemoryObjectReceiveStream[PendingBatch],
    board: ProgressBoard,
    tz: dt.tzinfo,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Commit batches until every sender has closed; then return.

    Runs shielded from cancellation so that what reached the queue is committed even while the
    supervisor is being cancelled (the queue is bounded, so this ends quickly)."""
    task_status.started()
    with anyio.CancelScope(shield=True):
        async with batches:
            async for pending in batches:
                batch = pending.record
                result = await store.commit_batch(run_id, batch)
                new_day = board.day != batch.day
                board.record(batch.datatype, batch.day, result, batch.status == "ok")
                if new_day:  # the UTC offset may have changed (DST) with the day
                    await store.refresh_day(tz)
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
                    error=batch.error,
                )
                pending.committed.set()
