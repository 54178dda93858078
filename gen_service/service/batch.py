"""One batch: its briefs, the requests that write them, and the record the writer commits.

A batch is planned for a number of briefs (fresh ones, or a flagged batch's to regenerate).
Its first request asks for all of them. When an answer stops at ``length``, the complete items
it holds are kept and a follow-up request asks only for the briefs still missing; an answer
without one complete item is retried with a larger budget, never one the context cannot hold.
Every request is sized by the token budget (:mod:`gen_service.domain.budget`), and each
successful one moves the budget's estimates. The record sums every request of the batch: its
attempts, its tokens, and the tokens spent on what was thrown away (``wasted_tokens``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from gen_service.adapters.backend import ChatRequest, Completion, Message, RunnerOptions
from gen_service.adapters.retrying import RetriesExhausted, RetryPolicy, with_retries
from gen_service.config import DatatypeConfig, ModelConfig
from gen_service.domain import budget
from gen_service.domain.checking import item_template, rules_for
from gen_service.domain.content import TextRule
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._base import DataTypeSpec, ItemContext
from gen_service.domain.facets import steer
from gen_service.domain.parsing import (
    complete_items,
    extract_json,
    items_of,
)
from gen_service.domain.prompts import Prompt
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.errors import BackendError, InvalidCompletion, TruncatedOutput
from gen_service.service.board import local_day
from gen_service.service.regeneration import Regeneration

if TYPE_CHECKING:
    from gen_service.service.producer import Generation

log = structlog.get_logger("gen_service.batch")

ROTATE_EVERY = 24  # requests of a type between changes of its few-shot examples

# json.dumps(value, ensure_ascii=False), without building an encoder for every call.
_to_json = json.JSONEncoder(ensure_ascii=False).encode


@dataclass(slots=True)
class BatchPlan:
    """One batch decided before it is sent: the briefs, the seed, the rules."""

    datatype: str
    phase: str
    spec: DataTypeSpec
    dtc: DatatypeConfig
    model: ModelConfig
    contexts: list[ItemContext]
    seed: int
    rng: random.Random
    rotation: int  # the few-shot rotation every request of the batch uses
    started_at: dt.datetime  # from the service's Clock
    rules: Mapping[str, TextRule]  # content rules of the free-text fields
    replaces: int | None = None  # the flagged batch this one regenerates
    regeneration: int = 0
    refinement: str | None = None
    first_prompt: Prompt | None = None  # provenance: the first request's prompt

    @property
    def size(self) -> int:
        return len(self.contexts)

    @property
    def key(self) -> tuple[str, str]:
        return (self.datatype, self.model.name)


def plan_batch(
    gen: Generation, datatype: str, phase: str, size: int, job: Regeneration | None = None
) -> BatchPlan:
    """Sample ``size`` briefs (or take a regeneration's)."""
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
    # Few-shot examples rotate every ROTATE_EVERY batches of a type, so the prompt's static
    # prefix (system text, instructions, examples) repeats and the server's cache is reused.
    counter = gen.requests.get(datatype, 0)
    gen.requests[datatype] = counter + 1
    return BatchPlan(
        datatype=datatype,
        phase=phase,
        spec=spec,
        dtc=dtc,
        model=gen.cfg.models[dtc.model],
        contexts=list(contexts),
        seed=rng.randrange(2**31),
        rng=rng,
        rotation=counter // ROTATE_EVERY,
        started_at=gen.clock.now(),
        rules=rules_for(spec, dtc.min_words),
        replaces=job.batch_id if job is not None else None,
        regeneration=job.regeneration if job is not None else 0,
        refinement=job.refinement if job is not None else None,
    )


def render(gen: Generation, plan: BatchPlan, indexes: Sequence[int]) -> Prompt:
    """The prompt asking for the briefs at ``indexes``."""
    briefs = [plan.contexts[i] for i in indexes]
    return gen.library.render(
        plan.spec,
        batch_size=len(briefs),
        contexts=briefs,
        rng=random.Random(plan.seed),
        examples=plan.dtc.few_shot,
        rotation=plan.rotation,
        refinement=plan.refinement,
    )


def schema_for(plan: BatchPlan, indexes: Sequence[int]) -> dict[str, Any]:
    """The schema of a request for the briefs at ``indexes`` (built once the request's size
    is known)."""
    template = item_template(
        plan.spec,
        max_string_chars=plan.dtc.max_string_chars,
        min_words=plan.dtc.min_words,
        grammar_cap=plan.dtc.max_string_chars if plan.model.grammar_safe else None,
        letters=plan.model.text_charset == "letters",
    )
    return template.request_schema([plan.contexts[i] for i in indexes])


def estimate_for(gen: Generation, plan_or_key: BatchPlan | tuple[str, str]) -> budget.Estimate:
    """The token estimate of a (data type, model), seeded from the few-shot examples."""
    key = plan_or_key.key if isinstance(plan_or_key, BatchPlan) else plan_or_key
    estimate = gen.budgets.get(key)
    if estimate is None:
        datatype = key[0]
        examples = [
            json.dumps(json.loads(e), separators=(",", ":"), ensure_ascii=False)
            for e in gen.library.examples_for(datatype)
        ]
        estimate = budget.seed_estimate(examples, think=gen.cfg.datatypes[datatype].think)
        gen.budgets[key] = estimate
    return estimate


@dataclass(slots=True)
class Exchange:
    """Every request of one batch, summed."""

    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    # Every item the answers held, with the position of its brief: validated and checked
    # once the requests are over (gen_service.domain.rows.check_answers).
    answers: list[tuple[int, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    eval_tokens: int = 0
    wasted_tokens: int = 0
    total_s: float = 0.0
    load_s: float = 0.0
    eval_s: float = 0.0
    num_predict: int = 0
    requests: int = 0

    def add(self, completion: Completion) -> None:
        self.prompt_tokens += completion.prompt_tokens
        self.eval_tokens += completion.eval_tokens
        self.total_s += completion.total_s
        self.load_s += completion.load_s
        self.eval_s += completion.eval_s


@dataclass(slots=True)
class _Answer:
    """One request's usable part: the decoded items, and whether the answer was cut short."""

    completion: Completion
    items: list[Any]
    truncated: bool
    used_share: float  # the share of the answer's text the items take (1 when complete)


async def send(gen: Generation, plan: BatchPlan, exchange: Exchange) -> None:
    """Request the plan's briefs until every one has an item: follow-ups ask only for what an
    answer that stopped at ``length`` did not finish. Raises RetriesExhausted/BackendError
    when a request fails for good (the items gathered so far stay in ``exchange``)."""
    missing = list(range(plan.size))
    estimate = estimate_for(gen, plan)
    while missing:
        asked = missing
        prompt = render(gen, plan, asked)
        prompt_chars = len(prompt.system) + len(prompt.user)
        sizing = budget.fit(
            estimate,
            num_predict=plan.dtc.num_predict,
            num_ctx=plan.model.num_ctx,
            prompt_chars=prompt_chars,
            cap=len(asked),
        )
        if sizing.items < len(asked):  # the answer would not fit: ask for fewer briefs
            asked = missing[: sizing.items]
            prompt = render(gen, plan, asked)
            prompt_chars = len(prompt.system) + len(prompt.user)
        schema = schema_for(plan, asked)
        if plan.first_prompt is None:
            plan.first_prompt = prompt
        answer = await _request(gen, plan, prompt, schema, sizing, exchange)
        exchange.add(answer.completion)
        exchange.requests += 1
        if len(answer.items) > len(asked):  # more than asked for: the extra have no brief
            log.warning("batch.extra_items", asked=len(asked), got=len(answer.items))
        exchange.answers.extend(zip(asked, answer.items, strict=False))
        done = len(answer.items)
        kept_tokens = round(answer.completion.eval_tokens * answer.used_share)
        exchange.wasted_tokens += answer.completion.eval_tokens - kept_tokens
        budget.observe(
            estimate,
            items=done,
            eval_tokens=kept_tokens,
            thinking_tokens=round(len(answer.completion.thinking) / budget.CHARS_PER_TOKEN),
            prompt_tokens=answer.completion.prompt_tokens,
            prompt_chars=prompt_chars,
        )
        missing = asked[done:] + missing[len(asked) :]
        if answer.truncated and missing:
            log.info(
                "batch.continued",
                kept=done,
                missing=len(missing),
                num_predict=exchange.num_predict,
                per_item=round(estimate.per_item),
            )


async def _request(
    gen: Generation,
    plan: BatchPlan,
    prompt: Prompt,
    schema: dict[str, Any],
    sizing: budget.Fit,
    exchange: Exchange,
) -> _Answer:
    """One request with retries. An answer cut at ``length`` that holds complete items is a
    success (the caller asks for the rest); one without any is retried with a larger budget."""

    async def attempt(num_predict: int) -> _Answer:
        exchange.num_predict = num_predict
        sent = time.perf_counter()
        completion = await gen.backend.chat(
            ChatRequest(
                model=plan.model.name,
                messages=(Message("system", prompt.system), Message("user", prompt.user)),
                schema=schema,
                temperature=plan.dtc.temperature,
                num_predict=num_predict,
                runner=RunnerOptions(num_ctx=plan.model.num_ctx, num_gpu=plan.model.num_gpu),
                think=plan.dtc.think,
                seed=plan.seed,
                keep_alive=gen.cfg.backend.keep_alive,
                repeat_penalty=plan.dtc.repeat_penalty,
            )
        )
        gen.concurrency.observe(
            plan.model.name,
            gen.limiter(plan.model.name),
            wall_s=time.perf_counter() - sent,
            busy_s=completion.total_s,
            most=gen.cfg.backend.num_parallel,
        )
        try:
            items = _items(completion.content)
        except InvalidCompletion:
            exchange.wasted_tokens += completion.eval_tokens  # decoded, and unusable
            raise
        return _Answer(completion, items, truncated=False, used_share=1.0)

    b = gen.cfg.backend
    policy = RetryPolicy(
        max_retries=b.max_retries,
        initial_s=b.retry_initial_s,
        max_s=b.retry_max_s,
        num_predict_cap=sizing.room,  # a retry never asks for more than the context holds
    )
    try:
        result = await with_retries(
            attempt,
            policy=policy,
            num_predict=sizing.num_predict,
            rng=plan.rng,
            log=log.bind(model=plan.model.name),
            hooks=gen.gate,
            salvage=_salvage,
        )
    except RetriesExhausted as exc:
        exchange.attempts += exc.attempts
        exchange.errors.extend(exc.errors)
        exchange.wasted_tokens += exc.wasted_tokens
        raise
    exchange.attempts += result.attempts
    exchange.errors.extend(result.errors)
    exchange.wasted_tokens += result.wasted_tokens
    return result.value


def _items(content: str) -> list[Any]:
    """The items of a complete answer (raises InvalidCompletion when it holds no JSON)."""
    return items_of(extract_json(content))


def _salvage(exc: TruncatedOutput) -> _Answer | None:
    """What an answer cut at ``length`` can give: its complete items, or None (retry)."""
    items = complete_items(exc.content)
    if not items:
        return None
    used = len(json.dumps(items, ensure_ascii=False))
    share = min(1.0, used / max(1, len(exc.content)))
    completion = Completion(content=exc.content, done_reason="length", eval_tokens=exc.tokens)
    return _Answer(completion, items, truncated=True, used_share=share)


async def make_batch(
    gen: Generation,
    datatype: str,
    phase: str,
    size: int,
    job: Regeneration | None = None,
    answered: Callable[[bool], Awaitable[None]] | None = None,
) -> BatchRecord:
    """One batch (one or more requests) and its checked rows; a batch none of whose requests
    succeeded becomes a failed record, and one cut short keeps what it got. ``answered`` is
    awaited once the requests are over, before the checks (which need no model), with
    whether any item came back."""
    await gen.quotas.refresh(gen.store, datatype)
    plan = plan_batch(gen, datatype, phase, size, job)
    exchange = Exchange()
    failure: str | None = None
    try:
        await send(gen, plan, exchange)
    except RetriesExhausted as exc:
        failure = str(exc.last)
        log.warning("batch.failed", model=plan.model.name, attempts=exc.attempts, error=failure)
    except BackendError as exc:  # not retryable: a rejected request, a missing model
        failure = str(exc)
        exchange.attempts += 1
        exchange.errors.append(f"attempt {exchange.attempts}: {type(exc).__name__}: {exc}")
        log.error(
            "batch.failed", model=plan.model.name, error=failure, error_type=type(exc).__name__
        )
    got = bool(exchange.answers)
    if answered is not None:
        await answered(got)
    briefs = [_to_json(c.to_json()) for c in plan.contexts]
    return _record(
        gen,
        plan,
        briefs,
        status="ok" if got else "failed",
        attempts=max(1, exchange.attempts),
        num_predict=exchange.num_predict or plan.dtc.num_predict,
        error="\n".join(exchange.errors) or None,
        prompt_tokens=exchange.prompt_tokens,
        eval_tokens=exchange.eval_tokens,
        wasted_tokens=exchange.wasted_tokens,
        total_s=exchange.total_s,
        load_s=exchange.load_s,
        eval_s=exchange.eval_s,
        samples=await _rows(gen, plan, exchange.answers, briefs) if got else (),
    )


async def _rows(
    gen: Generation, plan: BatchPlan, answers: list[tuple[int, Any]], briefs: list[str]
) -> tuple[SampleRow, ...]:
    """Every item of the batch validated and checked, where ``service.check_workers`` says."""
    rows = await gen.checkers.rows(
        gen.cfg.service.check_workers, plan.spec, answers, plan.contexts, briefs, plan.rules
    )
    return tuple(rows)


def _record(gen: Generation, plan: BatchPlan, briefs: list[str], **fields: Any) -> BatchRecord:
    now = gen.clock.now()
    prompt = plan.first_prompt
    return BatchRecord(
        template_hash=prompt.template_hash if prompt else gen.library.template_hash(plan.datatype),
        example_ids=prompt.example_ids if prompt else (),
        briefs_json=f"[{', '.join(briefs)}]",  # what _to_json writes for the list
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
