"""Producers: per data type, keep up to ``num_parallel`` requests in flight (a limiter shared
per model), turn each completion into checked sample rows, and hand them to the writer."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from gen_service.adapters.backend import Backend, ChatRequest, Completion, Message, RunnerOptions
from gen_service.adapters.retrying import Attempts, RetriesExhausted, RetryPolicy, with_retries
from gen_service.adapters.store import Store
from gen_service.config import Config, DatatypeConfig, ModelConfig
from gen_service.domain.checking import check, request_schema, rules_for
from gen_service.domain.content import TextRule
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._base import DataTypeSpec, ItemContext
from gen_service.domain.dedup import content_hash
from gen_service.domain.facets import steer
from gen_service.domain.judging import JudgeLibrary
from gen_service.domain.parsing import ParsedBatch, parse_completion
from gen_service.domain.prompts import Prompt, PromptLibrary
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.domain.schema import item_schema
from gen_service.errors import BackendError
from gen_service.service.board import ProgressBoard, local_day
from gen_service.service.clock import Clock
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
    requests: dict[str, int] = field(default_factory=dict)  # requests planned, per data type
    quotas: QuotaCounts = field(default_factory=QuotaCounts)  # accepted per quota key, cached

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
) -> None:
    """Issue batches for ``datatype`` until ``remaining(datatype)`` is 0, the phase ends
    (``stop``) or the service drains; in-flight batches always finish and are committed."""
    in_flight_items = 0
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
            # A flagged batch waiting to be written again goes before fresh briefs.
            job = await gen.regenerations.take(gen.cfg, datatype)
            size = len(job.briefs) if job else min(dtc.batch_size, need - in_flight_items)
            in_flight_items += size

            async def one(
                size: int = size,
                token: object = token,
                limiter: anyio.CapacityLimiter = limiter,
                job: Regeneration | None = job,
            ) -> None:
                nonlocal in_flight_items
                try:
                    try:
                        record = await make_batch(gen, datatype, phase, size, job)
                    except Exception as exc:  # a bug must not end a 24/7 run: record it
                        log.exception("batch.crashed")
                        record = crashed_record(gen, datatype, phase, size, exc)
                    finally:
                        limiter.release_on_behalf_of(token)  # the model is free again
                    pending = PendingBatch(record)
                    await batches.send(pending)
                    await pending.committed.wait()
                finally:
                    in_flight_items -= size
                    if job is not None:
                        gen.regenerations.release(job.batch_id)
                    gen.board.poke()  # wake the loop: what is in flight changed

            tg.start_soon(one, name=f"batch:{datatype}")


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """One request decided before it is sent: the briefs, the prompt, the schema, the seed."""

    datatype: str
    phase: str
    spec: DataTypeSpec
    dtc: DatatypeConfig
    model: ModelConfig
    contexts: list[ItemContext]
    prompt: Prompt
    schema: dict[str, Any]
    seed: int
    rng: random.Random
    started_at: dt.datetime  # from the service's Clock
    rules: Mapping[str, TextRule]  # content rules of the free-text fields
    replaces: int | None = None  # the flagged batch this one regenerates
    regeneration: int = 0
    refinement: str | None = None

    @property
    def size(self) -> int:
        return len(self.contexts)


def plan_batch(
    gen: Generation, datatype: str, phase: str, size: int, job: Regeneration | None = None
) -> BatchPlan:
    """Sample ``size`` briefs (or take a regeneration's) and render the request for them."""
    dtc = gen.cfg.datatypes[datatype]
    spec = REGISTRY[datatype]
    rng = random.Random(gen.rng.getrandbits(64))
    if job is not None:
        contexts = job.briefs
    else:
        # Quota steering: the categories furthest below an even share of the accepted samples
        # get more of the new briefs (counts from gen.quotas, refreshed by make_batch).
        facets = gen.library.facets
        weights = steer(spec.categories(facets), gen.quotas.counts(datatype))
        contexts = spec.sample_contexts(rng, size, facets=facets, weights=weights)
    # Few-shot examples rotate every ROTATE_EVERY requests of a type, so the prompt's static
    # prefix (system text, instructions, examples) repeats and the server's cache is reused.
    counter = gen.requests.get(datatype, 0)
    gen.requests[datatype] = counter + 1
    prompt = gen.library.render(
        spec,
        batch_size=len(contexts),
        contexts=contexts,
        rng=rng,
        examples=dtc.few_shot,
        rotation=counter // ROTATE_EVERY,
        refinement=job.refinement if job is not None else None,
    )
    rules = rules_for(spec, dtc.min_words)
    item = item_schema(spec.model, dtc.max_string_chars)
    model = gen.cfg.models[dtc.model]
    return BatchPlan(
        datatype=datatype,
        phase=phase,
        spec=spec,
        dtc=dtc,
        model=model,
        contexts=contexts,
        prompt=prompt,
        schema=request_schema(
            item,
            contexts,
            rules,
            positional=True,
            grammar_cap=dtc.max_string_chars if model.grammar_safe else None,
        ),
        seed=rng.randrange(2**31),
        rng=rng,
        started_at=gen.clock.now(),
        rules=rules,
        replaces=job.batch_id if job is not None else None,
        regeneration=job.regeneration if job is not None else 0,
        refinement=job.refinement if job is not None else None,
    )


def chat_request(gen: Generation, plan: BatchPlan, num_predict: int) -> ChatRequest:
    """The backend request for ``plan`` with a given output budget."""
    return ChatRequest(
        model=plan.model.name,
        messages=(Message("system", plan.prompt.system), Message("user", plan.prompt.user)),
        schema=plan.schema,
        temperature=plan.dtc.temperature,
        num_predict=num_predict,
        runner=RunnerOptions(num_ctx=plan.model.num_ctx, num_gpu=plan.model.num_gpu),
        think=plan.dtc.think,
        seed=plan.seed,
        keep_alive=gen.cfg.backend.keep_alive,
    )


async def send(gen: Generation, plan: BatchPlan) -> Attempts[tuple[Completion, ParsedBatch]]:
    """The request with retries; a completion counts once its text parses."""

    async def attempt(num_predict: int) -> tuple[Completion, ParsedBatch]:
        completion = await gen.backend.chat(chat_request(gen, plan, num_predict))
        return completion, parse_completion(completion.content, plan.spec.model)

    return await with_retries(
        attempt,
        policy=gen.retry_policy(plan.model.num_ctx),
        num_predict=plan.dtc.num_predict,
        rng=plan.rng,
        log=log.bind(model=plan.model.name),
        hooks=gen.gate,
    )


async def make_batch(
    gen: Generation, datatype: str, phase: str, size: int, job: Regeneration | None = None
) -> BatchRecord:
    """One request (with retries) and its checked rows; failures become a failed record."""
    await gen.quotas.refresh(gen.store, datatype)
    plan = plan_batch(gen, datatype, phase, size, job)
    try:
        result = await send(gen, plan)
    except RetriesExhausted as exc:
        log.warning(
            "batch.failed", model=plan.model.name, attempts=exc.attempts, error=str(exc.last)
        )
        return failed_record(gen, plan, attempts=exc.attempts, error="\n".join(exc.errors))
    except BackendError as exc:  # not retryable: a rejected request, a missing model
        log.error(
            "batch.failed",
            model=plan.model.name,
            attempts=1,
            error=str(exc),
            error_type=type(exc).__name__,
        )
        return failed_record(gen, plan, attempts=1, error=f"attempt 1: {type(exc).__name__}: {exc}")
    completion, parsed = result.value
    return _record(
        gen,
        plan,
        status="ok",
        attempts=result.attempts,
        num_predict=result.num_predict,
        error="\n".join(result.errors) or None,
        prompt_tokens=completion.prompt_tokens,
        eval_tokens=completion.eval_tokens,
        total_s=completion.total_s,
        load_s=completion.load_s,
        eval_s=completion.eval_s,
        samples=tuple(rows_of(plan.spec, parsed, plan.contexts, plan.rules)),
    )


def failed_record(gen: Generation, plan: BatchPlan, *, attempts: int, error: str) -> BatchRecord:
    return _record(
        gen, plan, status="failed", attempts=attempts, num_predict=plan.dtc.num_predict, error=error
    )


def _record(gen: Generation, plan: BatchPlan, **fields: Any) -> BatchRecord:
    now = gen.clock.now()
    return BatchRecord(
        template_hash=plan.prompt.template_hash,
        example_ids=plan.prompt.example_ids,
        briefs_json=json.dumps([c.to_json() for c in plan.contexts], ensure_ascii=False),
        replaces=plan.replaces,
        regeneration=plan.regeneration,
        refinement=plan.refinement,
        datatype=plan.datatype,
        model=plan.model.name,
        phase=plan.phase,
        requested=plan.size,
        temperature=plan.dtc.temperature,
        seed=plan.seed,
        created_at=plan.started_at.isoformat(timespec="milliseconds"),
        day=local_day(gen.cfg.service.tzinfo(), plan.started_at),
        latency_s=(now - plan.started_at).total_seconds(),
        **fields,
    )


def crashed_record(
    gen: Generation, datatype: str, phase: str, size: int, exc: Exception
) -> BatchRecord:
    dtc = gen.cfg.datatypes[datatype]
    now = gen.clock.now()
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
    spec: DataTypeSpec,
    parsed: ParsedBatch,
    contexts: Sequence[ItemContext],
    rules: Mapping[str, TextRule],
) -> list[SampleRow]:
    """Check every item against its brief; every item becomes a row, accepted or rejected,
    carrying the brief it was written from."""
    rows: list[SampleRow] = []
    briefs = [json.dumps(c.to_json(), ensure_ascii=False) for c in contexts]
    for item in parsed.valid:
        payload = item.sample.model_dump(mode="json")
        brief = contexts[item.index] if item.index < len(contexts) else None
        problems = check(spec, item.sample, brief, rules=rules, payload=payload)
        rows.append(
            SampleRow(
                datatype=spec.name,
                status="rejected" if problems else "accepted",
                payload_json=json.dumps(payload, ensure_ascii=False),
                # Exact copies are judged on the prose: the same text under new names and
                # numbers is still the same training example.
                content_hash=content_hash(spec.text_for_dedup(item.sample)),
                reason="; ".join(problems) or None,
                quota_key=brief.quota_key if brief is not None else None,
                item_index=item.index,
                brief_json=briefs[item.index] if item.index < len(briefs) else None,
            )
        )
    for bad in parsed.invalid:
        rows.append(
            SampleRow(
                datatype=spec.name,
                status="rejected",
                payload_json=json.dumps(bad.raw, ensure_ascii=False, default=str),
                reason=f"schema: {bad.error}",
                item_index=bad.index,
                brief_json=briefs[bad.index] if bad.index < len(briefs) else None,
            )
        )
    return rows
