"""Producers: per data type, keep up to ``num_parallel`` requests in flight (a limiter shared
per model), turn each completion into checked sample rows, and hand them to the writer."""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from gen_service.adapters.backend import Backend, ChatRequest, Completion, Message, RunnerOptions
from gen_service.adapters.retrying import RetriesExhausted, RetryPolicy, with_retries
from gen_service.config import Config
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._base import DataTypeSpec, ItemContext
from gen_service.domain.dedup import content_hash
from gen_service.domain.parsing import ParsedBatch, parse_completion
from gen_service.domain.prompts import PromptLibrary
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.domain.schema import batch_schema
from gen_service.errors import BackendError
from gen_service.service.board import ProgressBoard, local_day
from gen_service.service.gate import BackendGate, GateState
from gen_service.service.writer import PendingBatch

log = structlog.get_logger("gen_service.producer")


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
    batches: MemoryObjectSendStream[PendingBatch],
    stop: anyio.Event,
) -> None:
    """Issue batches for ``datatype`` until ``remaining(datatype)`` is 0, the phase ends
    (``stop``) or the service drains; in-flight batches always finish and are committed."""
    in_flight_items = 0

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
            if need - in_flight_items <= 0:
                await gen.board.wait_changed()
                continue
            model = gen.cfg.models[dtc.model]
            if gen.gate.state is not GateState.OPEN:
                with anyio.move_on_after(1.0):  # re-check stop/reload at least every second
                    await gen.gate.wait_open()
                continue
            limiter = gen.limiter(model.name)
            token = object()
            await limiter.acquire_on_behalf_of(token)
            if halted():
                limiter.release_on_behalf_of(token)
                break
            size = min(dtc.batch_size, need - in_flight_items)
            in_flight_items += size

            async def one(
                size: int = size,
                token: object = token,
                limiter: anyio.CapacityLimiter = limiter,
            ) -> None:
                nonlocal in_flight_items
                try:
                    try:
                        record = await make_batch(gen, datatype, phase, size)
                    except Exception as exc:  # a bug must not end a 24/7 run: record it
                        log.exception("batch.crashed", datatype=datatype, phase=phase)
                        record = crashed_record(gen, datatype, phase, size, exc)
                    finally:
                        limiter.release_on_behalf_of(token)  # the model is free again
                    pending = PendingBatch(record)
                    await batches.send(pending)
                    await pending.committed.wait()
                finally:
                    in_flight_items -= size
                    gen.board.poke()  # wake the loop: what is in flight changed

            tg.start_soon(one, name=f"batch:{datatype}")


async def make_batch(gen: Generation, datatype: str, phase: str, size: int) -> BatchRecord:
    """One request (with retries) and its checked rows; failures become a failed record."""
    cfg = gen.cfg
    dtc = cfg.datatypes[datatype]
    model_cfg = cfg.models[dtc.model]
    spec = REGISTRY[datatype]
    rng = random.Random(gen.rng.getrandbits(64))
    contexts = spec.sample_contexts(rng, size)
    prompt = gen.library.render(
        spec, batch_size=size, contexts=contexts, rng=rng, examples=dtc.few_shot
    )
    seed = rng.randrange(2**31)
    schema = batch_schema(
        spec.model,
        size,
        max_string_chars=dtc.max_string_chars,
        grammar_safe=model_cfg.grammar_safe,
    )
    runner = RunnerOptions(num_ctx=model_cfg.num_ctx, num_gpu=model_cfg.num_gpu)
    bound = log.bind(datatype=datatype, model=model_cfg.name, phase=phase)
    started = time.perf_counter()

    async def attempt(num_predict: int) -> tuple[Completion, ParsedBatch]:
        completion = await gen.backend.chat(
            ChatRequest(
                model=model_cfg.name,
                messages=(Message("system", prompt.system), Message("user", prompt.user)),
                schema=schema,
                temperature=dtc.temperature,
                num_predict=num_predict,
                runner=runner,
                think=dtc.think,
                seed=seed,
                keep_alive=cfg.backend.keep_alive,
            )
        )
        return completion, parse_completion(completion.content, spec.model)

    now = dt.datetime.now(dt.UTC)
    record = functools.partial(
        BatchRecord,
        datatype=datatype,
        model=model_cfg.name,
        phase=phase,
        requested=size,
        temperature=dtc.temperature,
        seed=seed,
        created_at=now.isoformat(timespec="milliseconds"),
        day=local_day(cfg.service.tzinfo(), now),
    )
    try:
        result = await with_retries(
            attempt,
            policy=gen.retry_policy(model_cfg.num_ctx),
            num_predict=dtc.num_predict,
            rng=rng,
            log=bound,
            hooks=gen.gate,
        )
    except RetriesExhausted as exc:
        bound.warning("batch.failed", attempts=exc.attempts, error=str(exc.last))
        return record(
            status="failed",
            attempts=exc.attempts,
            num_predict=dtc.num_predict,
            error="\n".join(exc.errors),
            latency_s=time.perf_counter() - started,
        )
    except BackendError as exc:  # not retryable: a rejected request, a missing model
        bound.error("batch.failed", attempts=1, error=str(exc), error_type=type(exc).__name__)
        return record(
            status="failed",
            attempts=1,
            num_predict=dtc.num_predict,
            error=f"attempt 1: {type(exc).__name__}: {exc}",
            latency_s=time.perf_counter() - started,
        )
    completion, parsed = result.value
    return record(
        status="ok",
        attempts=result.attempts,
        num_predict=result.num_predict,
        error="\n".join(result.errors) or None,
        prompt_tokens=completion.prompt_tokens,
        eval_tokens=completion.eval_tokens,
        total_s=completion.total_s,
        load_s=completion.load_s,
        eval_s=completion.eval_s,
        latency_s=time.perf_counter() - started,
        samples=tuple(rows_of(spec, parsed, contexts)),
    )


def crashed_record(
    gen: Generation, datatype: str, phase: str, size: int, exc: Exception
) -> BatchRecord:
    dtc = gen.cfg.datatypes[datatype]
    now = dt.datetime.now(dt.UTC)
    return BatchRecord(
        datatype=datatype,
        model=gen.cfg.models[dtc.model].name,
        phase=phase,
        status="failed",
        attempts=1,
        requested=size,
        temperature=dtc.temperature,
        num_predict=dtc.num_predict,
        seed=0,
        created_at=now.isoformat(timespec="milliseconds"),
        day=local_day(gen.cfg.service.tzinfo(), now),
        error=f"internal error: {type(exc).__name__}: {exc}",
    )


def rows_of(
    spec: DataTypeSpec, parsed: ParsedBatch, contexts: list[ItemContext]
) -> list[SampleRow]:
    """Run the generation-time checks; every item becomes a row, accepted or rejected."""
    rows: list[SampleRow] = []
    for item in parsed.valid:
        payload = item.sample.model_dump(mode="json")
        problems = [p for check in spec.checks for p in check(item.sample)]
        quota_key = contexts[item.index].quota_key if item.index < len(contexts) else None
        rows.append(
            SampleRow(
                datatype=spec.name,
                status="rejected" if problems else "accepted",
                payload_json=json.dumps(payload, ensure_ascii=False),
                content_hash=content_hash(payload),
                reason="; ".join(problems) or None,
                quota_key=quota_key,
            )
        )
    for bad in parsed.invalid:
        rows.append(
            SampleRow(
                datatype=spec.name,
                status="rejected",
                payload_json=json.dumps(bad.raw, ensure_ascii=False, default=str),
                reason=f"schema: {bad.error}",
            )
        )
    return rows
