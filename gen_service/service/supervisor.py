"""The supervisor: one task group holding the writer, the signal watcher and the schedule.

Drain the arq way: on SIGTERM/SIGINT stop issuing requests, give in-flight ones the grace
period, then cancel; the writer commits whatever reached its queue, shielded."""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from gen_service import __version__
from gen_service.adapters.backend import Backend
from gen_service.adapters.factory import open_backend
from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.adapters.store import Store
from gen_service.config import Config, PhaseConfig
from gen_service.errors import BackendUnavailable
from gen_service.service.board import ProgressBoard, local_day
from gen_service.service.producer import Generation, produce
from gen_service.service.writer import PendingBatch, write_batches

log = structlog.get_logger("gen_service.supervisor")


@dataclass(slots=True)
class Outcome:
    reason: str  # "done" | "stopped"
    exit_code: int = 0


async def run_service(cfg: Config, *, until_done: bool = False) -> Outcome:
    """Run until stopped (or, with ``until_done``, until every total target is met)."""
    tz = cfg.service.tzinfo()
    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    async with open_backend(cfg) as backend:
        await preflight(cfg, backend)
        async with Store.open(cfg.service.db) as store:
            run = await store.start_run(
                version=__version__, config_path=str(cfg.source or ""), mode=cfg.schedule.mode
            )
            await store.set_targets(_targets(cfg), tz)
            today = local_day(tz)
            board = ProgressBoard(cfg, await store.type_counts(today), today)
            gen = Generation(
                cfg=cfg,
                backend=backend,
                library=library,
                board=board,
                limiters={},
                stopping=anyio.Event(),
                rng=random.Random(),
            )
            # Bounded: producers wait when the writer falls behind; memory stays flat.
            batches_tx, batches_rx = anyio.create_memory_object_stream[PendingBatch](
                max_buffer_size=cfg.backend.num_parallel * 2
            )
            outcome = Outcome("stopped")
            status = "crashed"
            log.info(
                "service.started",
                run_id=run.run_id,
                mode=cfg.schedule.mode,
                db=str(cfg.service.db),
                backend=backend.kind,
                url=backend.url,
            )
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(write_batches, store, run.run_id, batches_rx, board, tz)
                    work = anyio.CancelScope()
                    signals = anyio.CancelScope()
                    tg.start_soon(_watch_signals, gen, work, signals)
                    with work:
                        async with batches_tx:
                            outcome = await _schedule(gen, batches_tx, until_done)
                    signals.cancel()
                status = "finished" if outcome.reason == "done" else "stopped"
            finally:
                with anyio.CancelScope(shield=True):
                    await store.finish_run(run.run_id, status)
            counts = {d: board.tally(d).accepted for d in cfg.generate_datatypes()}
            log.info("service.stopped", reason=outcome.reason, accepted=counts)
            return outcome


async def preflight(cfg: Config, backend: Backend) -> None:
    """Catch an unreachable backend or a missing model before generation starts."""
    health = await backend.health()
    if not health.ok:
        raise BackendUnavailable(health.detail or f"the backend at {backend.url} is down")
    log.info("backend.ready", kind=backend.kind, url=backend.url, version=health.version)
    for role in sorted({cfg.datatypes[d].model for d in cfg.generate_datatypes()}):
        info = await backend.describe(cfg.models[role].name)
        log.info(
            "model.described",
            role=role,
            model=info.name,
            size_gb=round(info.size_bytes / 2**30, 2),
            capabilities=sorted(info.capabilities),
        )


def _targets(cfg: Config) -> list[tuple[str, str, int, int]]:
    return [
        (name, cfg.models[d.model].name, d.daily_target, d.total_target)
        for name, d in cfg.datatypes.items()
    ]


async def _watch_signals(gen: Generation, work: anyio.CancelScope, own: anyio.CancelScope) -> None:
    with own, anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if gen.stopping.is_set():
                log.warning("service.cancelling", signal=name)
                work.cancel()
                continue
            grace = gen.cfg.service.shutdown_grace_s
            log.info("service.draining", signal=name, grace_s=grace)
            gen.stopping.set()
            with anyio.move_on_after(grace):
                await anyio.sleep_forever()
            log.warning("service.grace_expired", grace_s=grace)
            work.cancel()


async def _schedule(
    gen: Generation, batches: MemoryObjectSendStream[PendingBatch], until_done: bool
) -> Outcome:
    while not gen.stopping.is_set():
        if gen.board.all_totals_met():
            if until_done:
                return Outcome("done")
            log.info("schedule.targets_met", note="idle until the config changes")
            while gen.board.all_totals_met() and not gen.stopping.is_set():
                await gen.board.wait_changed(5.0)
            continue
        await _sequential_cycle(gen, batches)
        gen.board.new_cycle()
    return Outcome("stopped")


async def _sequential_cycle(gen: Generation, batches: MemoryObjectSendStream[PendingBatch]) -> None:
    """One pass over the phases in listed order; each generate phase runs until its data types
    have met their daily target in this cycle (or their total)."""
    for phase in gen.cfg.schedule.phases:
        if gen.stopping.is_set():
            return
        if phase.kind != "generate":
            log.debug(
                "phase.skipped",
                phase=phase.name,
                kind=phase.kind,
                reason="runs beside generation in a later release",
            )
            continue
        todo = [d for d in phase.datatypes if gen.board.cycle_remaining(d) > 0]
        if todo:
            await run_generate_phase(gen, phase, todo, gen.board.cycle_remaining, batches)


async def run_generate_phase(
    gen: Generation,
    phase: PhaseConfig,
    datatypes: list[str],
    remaining: Callable[[str], int],
    batches: MemoryObjectSendStream[PendingBatch],
) -> None:
    models = sorted({gen.cfg.model_for(d).name for d in datatypes})
    log.info(
        "phase.started",
        phase=phase.name,
        datatypes=datatypes,
        models=models,
        needed={d: remaining(d) for d in datatypes},
    )
    async with anyio.create_task_group() as tg:
        for datatype in datatypes:
            tg.start_soon(produce, gen, datatype, phase.name, remaining, batches.clone())
    log.info(
        "phase.finished",
        phase=phase.name,
        accepted={d: gen.board.tally(d).accepted for d in datatypes},
    )
