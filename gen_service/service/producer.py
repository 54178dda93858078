"""Producers: per data type, keep up to ``num_parallel`` requests in flight (a limiter shared
per model), turn each completion into checked sample rows, and hand them to the writer."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from gen_service.adapters.backend import Backend
from gen_service.adapters.retrying import RetryPolicy
from gen_service.adapters.store import Store
from gen_service.config import Config
from gen_service.domain import budget, rounds
from gen_service.domain.budget import Estimate
from gen_service.domain.judging import JudgeLibrary
from gen_service.domain.prompts import PromptLibrary
from gen_service.service.batch import crashed_record, estimate_for, make_batch
from gen_service.service.board import ProgressBoard
from gen_service.service.checkers import Checkers
from gen_service.service.clock import Clock
from gen_service.service.concurrency import AdaptiveConcurrency
from gen_service.service.gate import BackendGate, GateState
from gen_service.service.quotas import QuotaCounts
from gen_service.service.regeneration import Regeneration, Regenerations
from gen_service.service.writer import PendingBatch, PendingWrite

log = structlog.get_logger("gen_service.producer")

ROTATE_EVERY = 24  # requests of a type between changes of its few-shot examples


@dataclass(slots=True)
class Generation:
    """What producers share for one run. ``cfg`` and ``library`` are swapped on SIGHUP."""

    cfg: Config
    backend: Backend
    library: PromptLibrary
    board: ProgressBoard
    limiters: dict[str, anyio.CapacityLimiter]
    stopping: anyio.Event  # the service is draining: issue nothing new
    rng: random.Random
    gate: BackendGate
    clock: Clock
    store: Store
    regenerations: Regenerations
    judges: JudgeLibrary | None = None  # the judge's prompts, when a validate phase runs
    requests: dict[str, int] = field(default_factory=dict)  # batches planned, per data type
    # Token estimates per (data type, model): how requests are sized (domain/budget.py).
    budgets: dict[tuple[str, str], Estimate] = field(default_factory=dict)
    quotas: QuotaCounts = field(default_factory=QuotaCounts)  # accepted per quota key, cached
    # Slots per model between 1 and num_parallel, from the queue wait the server adds.
    concurrency: AdaptiveConcurrency = field(default_factory=AdaptiveConcurrency)
    # Where batches are checked: the event loop, or service.check_workers processes.
    checkers: Checkers = field(default_factory=Checkers)

    def limiter(self, model: str) -> anyio.CapacityLimiter:
        if model not in self.limiters:
            self.limiters[model] = anyio.CapacityLimiter(self.cfg.backend.num_parallel)
        return self.limiters[model]

    def resize_limiters(self) -> None:
        """Apply a new backend.num_parallel (after SIGHUP) to every model's limiter."""
        for limiter in self.limiters.values():
            limiter.total_tokens = self.cfg.backend.num_parallel

    def retry_policy(self, num_ctx: int) -> RetryPolicy:
        b = self.cfg.backend
        return RetryPolicy(
            max_retries=b.max_retries,
            initial_s=b.retry_initial_s,
            max_s=b.retry_max_s,
            num_predict_cap=max(num_ctx, 1),
        )


async def produce(
    gen: Generation,
    datatype: str,
    phase: str,
    remaining: Callable[[str], int],
    batches: MemoryObjectSendStream[PendingWrite],
    stop: anyio.Event,
    issued_all: Callable[[], None] = lambda: None,
) -> None:
    """Issue batches for ``datatype`` until ``remaining(datatype)`` is 0, the phase ends
    (``stop``) or the service drains; in-flight batches always finish and are committed.
    ``issued_all`` is called once, when everything needed has been asked for (or the
    producer ends)."""
    in_flight_items = 0
    # The batches in flight (when each went out, its size) and the seconds per item they
    # took, to size a phase's last batches so that every slot ends together.
    flight: dict[object, tuple[float, int]] = {}
    pace: float | None = None
    told = False
    # Batches whose answers are in, being checked or queued for the writer (``answered``).
    checking = anyio.CapacityLimiter(gen.cfg.backend.num_parallel)

    def tell() -> None:
        nonlocal told
        if not told:
            told = True
            issued_all()

    # Every event of this producer and its batches carries the type and the phase.
    structlog.contextvars.bind_contextvars(datatype=datatype, phase=phase)

    def halted() -> bool:
        return gen.stopping.is_set() or stop.is_set()

    async with batches, anyio.create_task_group() as tg:
        while not halted():
            dtc = gen.cfg.datatypes.get(datatype)
            if dtc is None:
                break  # removed by a reload
            need = remaining(datatype)
            if need <= 0 and in_flight_items == 0:
                break
            if unassigned(gen, datatype, need, in_flight_items) <= 0:
                tell()  # only answers to come: the next phase may take the free slots
                await gen.board.wait_changed()
                continue
            model = gen.cfg.models[dtc.model]
            if gen.gate.state is not GateState.OPEN:
                with anyio.move_on_after(1.0):  # re-check stop/reload at least every second
                    await gen.gate.wait_open()
                continue
            limiter = gen.limiter(model.name)
            if checking.total_tokens != gen.cfg.backend.num_parallel:  # after a reload
                checking.total_tokens = gen.cfg.backend.num_parallel
            token = object()
            await limiter.acquire_on_behalf_of(token)
            if halted():
                limiter.release_on_behalf_of(token)
                break
            # While this waited for a slot, answers came in: size the batch on what is
            # needed now, not on what was needed before the wait.
            left = unassigned(gen, datatype, remaining(datatype), in_flight_items)
            if left <= 0:
                limiter.release_on_behalf_of(token)
                continue
            # A flagged batch waiting to be written again goes before fresh briefs.
            job = await gen.regenerations.take(gen.cfg, datatype)
            if job is not None:
                size = len(job.briefs)
            else:
                now = anyio.current_time()
                residual = sum(
                    rounds.residual_items(n, now - sent, pace) for sent, n in flight.values()
                )
                size = batch_size(gen, datatype, left, limiter, residual)
            in_flight_items += size
            flight[token] = (anyio.current_time(), size)

            async def one(
                size: int = size,
                token: object = token,
                limiter: anyio.CapacityLimiter = limiter,
                job: Regeneration | None = job,
            ) -> None:
                nonlocal in_flight_items
                held = {"slot": True, "checking": False}

                def release_checking() -> None:
                    if held["checking"]:
                        held["checking"] = False
                        checking.release_on_behalf_of(token)

                def free_slot() -> None:
                    if held["slot"]:
                        held["slot"] = False
                        limiter.release_on_behalf_of(token)  # the model is free again
                        flight.pop(token)

                async def answered(succeeded: bool) -> None:
                    # The answers are in: the model's slot goes to the next request while
                    # this batch is checked. At most num_parallel batches are being checked
                    # or queued for the writer; past that the slot is held until one is
                    # done, so slow checks hold back the requests instead of piling up
                    # batches.
                    nonlocal pace
                    now = anyio.current_time()  # the answers' time, before any wait here
                    await checking.acquire_on_behalf_of(token)
                    held["checking"] = True
                    sent, _ = flight[token]
                    free_slot()
                    if succeeded:
                        pace = rounds.smoothed(pace, (now - sent) / size)

                try:
                    try:
                        record = await make_batch(gen, datatype, phase, size, job, answered)
                    except Exception as exc:  # a bug must not end a 24/7 run: record it
                        log.exception("batch.crashed")
                        record = crashed_record(gen, datatype, phase, size, exc)
                    finally:
                        free_slot()
                    pending = PendingBatch(record)
                    await batches.send(pending)
                    release_checking()  # queued for the writer, whose queue is bounded too
                    await pending.committed.wait()
                finally:
                    release_checking()
                    in_flight_items -= size
                    if job is not None:
                        gen.regenerations.release(job.batch_id)
                    gen.board.poke()  # wake the loop: what is in flight changed

            tg.start_soon(one, name=f"batch:{datatype}")
        tell()  # the loop ended: nothing more will be asked for


def unassigned(gen: Generation, datatype: str, need: int, in_flight: int) -> int:
    """Items still to ask for: ``need`` accepted samples at the share of items this type has
    had accepted so far, less the ``in_flight`` items already asked for."""
    t = gen.board.tally(datatype)
    share = rounds.expected_yield(t.accepted, t.accepted + t.rejected + t.duplicates)
    return rounds.items_to_ask(need, in_flight, share)


def batch_size(
    gen: Generation,
    datatype: str,
    unassigned: int,
    limiter: anyio.CapacityLimiter,
    residual: float = 0.0,
) -> int:
    """How many briefs the next batch of ``datatype`` holds: at most ``batch_size``, what is
    still unassigned, and what the token budget says one answer can hold; near a phase's end
    a slot's share of what is left (``unassigned`` and the ``residual`` items the batches in
    flight have yet to write), so the slots finish together."""
    dtc = gen.cfg.datatypes[datatype]
    model = gen.cfg.models[dtc.model]
    slots = int(limiter.total_tokens)
    cap = rounds.next_batch(unassigned, dtc.batch_size, slots, residual)
    estimate = estimate_for(gen, (datatype, model.name))
    sizing = budget.fit(
        estimate,
        num_predict=dtc.num_predict,
        num_ctx=model.num_ctx,
        prompt_chars=estimate.prompt_chars,
        cap=cap,
    )
    return sizing.items
