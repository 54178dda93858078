"""The judge phase (memo stage 2): score a sample of every batch with the judge model, flag
the batches that fall short, and hand the verdicts to the writer.

What is due: every batch with accepted samples and no verdict. Of each, at least one sample is
judged, and ``validation.sample_rate`` of its accepted samples (rounded up), chosen by a seeded
draw so a rerun picks the same ones. Each judge request shows one sample blind (its labels
hidden, see :mod:`gen_service.domain.judging`); the verdicts of a batch are committed together
with its flag. Judge requests share the model's limiter, the retry policy and the backend gate
with the producers, so an outage pauses them the same way.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import structlog
from pydantic import ValidationError

from gen_service.adapters.backend import Backend, ChatRequest, Message, RunnerOptions
from gen_service.adapters.retrying import RetriesExhausted, RetryPolicy, with_retries
from gen_service.adapters.store import Store
from gen_service.adapters.store.quality import DueBatch, JudgmentRow
from gen_service.config import Config
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.judging import (
    Assessment,
    JudgeLibrary,
    VerdictBase,
    assess,
    batch_verdict,
    blind_view,
    verdict_model,
    verdict_schema,
)
from gen_service.domain.parsing import extract_json
from gen_service.domain.schema import grammar_safe
from gen_service.errors import BackendError, InvalidCompletion
from gen_service.service.gate import BackendGate
from gen_service.service.writer import PendingVerdicts

log = structlog.get_logger("gen_service.judge")

DUE_PAGE = 64  # batches fetched per round


@dataclass(slots=True)
class JudgeRound:
    """What one call of :meth:`Judge.judge_due` did."""

    batches: int = 0
    samples: int = 0
    flagged: int = 0
    failed: int = 0
    means: list[float] = field(default_factory=list)


class Judge:
    """Judges what is due, with the config's judge model."""

    def __init__(
        self,
        cfg: Config,
        backend: Backend,
        store: Store,
        library: JudgeLibrary,
        commit: Callable[[PendingVerdicts], Awaitable[None]],
        *,
        gate: BackendGate | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self.cfg = cfg
        self._backend = backend
        self._store = store
        self._library = library
        self._commit = commit
        self._gate = gate
        self._limiter = limiter or anyio.CapacityLimiter(cfg.backend.num_parallel)
        self._failed: set[int] = set()  # batches whose judging failed this run: retried later

    @property
    def model_name(self) -> str:
        return self.cfg.models[self.cfg.validation.model].name

    def datatypes(self) -> list[str]:
        return list(self.cfg.datatypes)

    async def due(self) -> int:
        """Batches waiting for a verdict."""
        return await self._store.unjudged_batches(self.datatypes())

    async def judge_due(self, halted: Callable[[], bool] = lambda: False) -> JudgeRound:
        """Judge every due batch (until ``halted()``); batches whose judging failed are left
        for a later round."""
        total = JudgeRound()
        while not halted():
            due = [
                b
                for b in await self._store.due_for_judging(self.datatypes(), DUE_PAGE)
                if b.batch_id not in self._failed
            ]
            if not due:
                break
            async with anyio.create_task_group() as tg:
                for batch in due:
                    tg.start_soon(self._judge_batch, batch, total)
        self._failed.clear()
        return total

    async def _judge_batch(self, batch: DueBatch, total: JudgeRound) -> None:
        spec = REGISTRY[batch.datatype]
        rate = self.cfg.validation.sample_rate
        count = min(len(batch.samples), max(1, math.ceil(rate * len(batch.samples))))
        chosen = random.Random(batch.batch_id).sample(list(batch.samples), count)
        assessments: list[tuple[int, Assessment]] = []
        for due in chosen:
            sample = spec.model.model_validate_json(due.payload)
            try:
                async with self._limiter:
                    verdict, key = await self._ask(spec.name, sample, seed=due.sample_id)
            except (RetriesExhausted, BackendError) as exc:
                log.warning(
                    "judge.failed", batch_id=batch.batch_id, sample_id=due.sample_id, error=str(exc)
                )
                self._failed.add(batch.batch_id)
                total.failed += 1
                return
            assessments.append((due.sample_id, assess(spec, sample, verdict, key)))
        summary = batch_verdict([a for _, a in assessments], self.cfg.validation.flag_below)
        rows = [
            JudgmentRow(
                sample_id=sample_id,
                model=self.model_name,
                overall=a.overall,
                scores=dict(a.scores),
                label_agreement=None if a.labels is None else a.labels.agreement,
                labels_ok=a.labels_ok,
                labels_json=_labels_json(a),
                issues=a.issues,
                recommendation=a.recommendation,
            )
            for sample_id, a in assessments
        ]
        await self._commit(
            PendingVerdicts(batch.batch_id, batch.datatype, rows, summary, batch.day)
        )
        total.batches += 1
        total.samples += len(rows)
        total.flagged += summary.flagged
        total.means.append(summary.mean)

    async def _ask(self, datatype: str, sample: object, *, seed: int) -> tuple[VerdictBase, object]:
        spec = REGISTRY[datatype]
        view, key = blind_view(spec, sample, seed)  # type: ignore[arg-type]
        system, user = self._library.render(spec, view)
        cfg = self.cfg
        model = cfg.models[cfg.validation.model]
        schema = verdict_schema(spec)
        if model.grammar_safe:
            schema = grammar_safe(schema, 2000)
        verdicts = verdict_model(spec)

        async def attempt(num_predict: int) -> VerdictBase:
            completion = await self._backend.chat(
                ChatRequest(
                    model=model.name,
                    messages=(Message("system", system), Message("user", user)),
                    schema=schema,
                    temperature=cfg.validation.temperature,
                    num_predict=num_predict,
                    runner=RunnerOptions(num_ctx=model.num_ctx, num_gpu=model.num_gpu),
                    think=cfg.validation.think,
                    seed=seed,
                    keep_alive=cfg.backend.keep_alive,
                )
            )
            try:
                return verdicts.model_validate(extract_json(completion.content))
            except ValidationError as exc:
                raise InvalidCompletion(f"the verdict does not match its schema: {exc}") from exc

        result = await with_retries(
            attempt,
            policy=RetryPolicy(
                max_retries=cfg.backend.max_retries,
                initial_s=cfg.backend.retry_initial_s,
                max_s=cfg.backend.retry_max_s,
                num_predict_cap=max(model.num_ctx, 1),
            ),
            num_predict=cfg.validation.num_predict,
            rng=random.Random(seed),
            log=log.bind(model=model.name, datatype=datatype),
            hooks=self._gate,
        )
        return result.value, key


def _labels_json(assessment: Assessment) -> str | None:
    """The judge's labels and where they differ from the sample's, for the judgments row."""
    if assessment.judge_labels is None:
        return None
    detail = assessment.labels.detail if assessment.labels is not None else ""
    return json.dumps({"judge": assessment.judge_labels, "detail": detail}, ensure_ascii=False)


async def validate_now(cfg: Config, backend: Backend) -> JudgeRound:
    """`gen-service validate`: judge what is due now and return. Safe beside a running
    service: SQLite serialises the two writers, and the service reads the new counts at its
    next phase."""
    from gen_service.adapters.prompt_files import load_judge_library
    from gen_service.errors import BackendUnavailable, ConfigError
    from gen_service.service.writer import commit_verdicts

    if cfg.validation.model not in cfg.models:
        raise ConfigError(
            f"[validation] model names the role {cfg.validation.model!r}, which has no "
            f"[models.{cfg.validation.model}] table. Fix: add it (the memo's judge is "
            "qwen3:32b) or name an existing role.",
            key="validation.model",
        )
    library = load_judge_library(cfg.service.prompts_dir, list(cfg.datatypes))
    health = await backend.health()
    if not health.ok:
        raise BackendUnavailable(health.detail or f"the backend at {backend.url} is down")
    model = cfg.models[cfg.validation.model]
    await backend.describe(model.name)  # ModelNotFound (exit 69) names the fix
    async with Store.open(cfg.service.db) as store:

        async def commit(pending: PendingVerdicts) -> None:
            await commit_verdicts(store, pending)

        judge = Judge(cfg, backend, store, library, commit)
        due = await judge.due()
        log.info("judge.started", model=model.name, due=due)
        result = await judge.judge_due()
    log.info(
        "judge.finished",
        batches=result.batches,
        samples=result.samples,
        flagged=result.flagged,
        failed=result.failed,
    )
    return result
