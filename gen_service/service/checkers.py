"""Where a batch's checks run: on the event loop, or in check worker processes.

Checking a batch (every item validated, its content, brief and type checks, its exact-duplicate
hash and MinHash signature: :func:`gen_service.domain.rows.check_answers`) is pure CPU work,
about half of what the event loop spends per sample. With ``service.check_workers = 0`` (the
default) the event loop does it: on one GPU the service makes a few samples a second and a
process would buy nothing. With N >= 1, up to N worker processes (``anyio.to_process``) do
it while the event loop goes on sending requests and reading answers, which is what a fast
backend (vLLM, many slots) needs once the service's own CPU is the limit.

Workers are started with the service (:meth:`Checkers.warm`) and reused; anyio stops one
left idle for five minutes, and all of them when the service stops. A drain waits for the
checks as for the requests; a worker still at one after :data:`CHECK_TIMEOUT_S` is killed.
A worker that dies, hangs or cannot be started, or anything else that goes wrong on the way
there and back: the batch is checked on the event loop instead and ``checks.worker_failed``
is logged; after :data:`GIVE_UP_AFTER` failures in a row the event loop checks every batch
until a reload changes ``check_workers`` (``checks.workers_given_up``, an error). A bug in
the checks themselves fails on the event loop too, and the batch is recorded as crashed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.to_process
import structlog

from gen_service.domain.content import TextRule
from gen_service.domain.datatypes._base import DataTypeSpec, ItemContext
from gen_service.domain.records import SampleRow
from gen_service.domain.rows import check_answers, check_answers_in_worker, ready

log = structlog.get_logger("gen_service.checkers")


GIVE_UP_AFTER = 3  # failures in a row after which the workers are left alone until a reload
# A batch's check takes milliseconds; a worker still at it after this is stuck (killed, and
# the batch checked on the event loop).
CHECK_TIMEOUT_S = 60.0


class Checkers:
    """Checks batches in up to ``workers`` processes (0: on the event loop)."""

    def __init__(self) -> None:
        self._limiter = anyio.CapacityLimiter(1)
        self.failures = 0  # batches a worker failed to check (then checked here)
        self._in_a_row = 0
        self._given_up_at: int | None = None  # the check_workers value given up on

    async def warm(self, workers: int) -> None:
        """Start the workers before the first batch needs them: a worker's imports take about
        a second, which the first batches would otherwise wait for."""
        if workers <= 0:
            return
        self._limiter.total_tokens = workers
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(self._start_one)
        except Exception as exc:
            log.warning("checks.worker_failed", error=f"{type(exc).__name__}: {exc}")

    async def _start_one(self) -> None:
        await anyio.to_process.run_sync(ready, limiter=self._limiter)

    async def rows(
        self,
        workers: int,
        spec: DataTypeSpec,
        answers: Sequence[tuple[int, Any]],
        contexts: Sequence[ItemContext],
        briefs: Sequence[str],
        rules: Mapping[str, TextRule],
    ) -> list[SampleRow]:
        """The batch's rows, as :func:`check_answers` makes them."""
        if self._given_up_at is not None and workers != self._given_up_at:
            self._given_up_at = None  # a reload changed check_workers: try them again
            self._in_a_row = 0
        if workers <= 0 or self._given_up_at is not None:
            return check_answers(spec, answers, contexts, briefs, rules)
        if self._limiter.total_tokens != workers:  # a reload changed check_workers
            self._limiter.total_tokens = workers
        try:
            with anyio.fail_after(CHECK_TIMEOUT_S):
                rows = await anyio.to_process.run_sync(
                    check_answers_in_worker,
                    spec.name,
                    list(answers),
                    list(briefs),
                    dict(rules),
                    cancellable=True,  # a stuck worker is killed; so is one a drain cuts off
                    limiter=self._limiter,
                )
        except Exception as exc:  # the batch is checked here instead
            # A bug in the checks raises here as it raised there: the batch is then recorded
            # as crashed, as on the event loop, and the workers are not to blame.
            rows = check_answers(spec, answers, contexts, briefs, rules)
            self.failures += 1
            self._in_a_row += 1
            log.warning(
                "checks.worker_failed",
                datatype=spec.name,
                error=f"{type(exc).__name__}: {exc}",
                fallback="checked on the event loop",
            )
            if self._in_a_row >= GIVE_UP_AFTER:
                self._given_up_at = workers
                log.error(
                    "checks.workers_given_up",
                    failures=self._in_a_row,
                    fix="the event loop checks every batch until a reload; see the errors"
                    " above, or set service.check_workers = 0",
                )
            return rows
        self._in_a_row = 0
        return rows
