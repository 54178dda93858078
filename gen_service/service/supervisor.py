"""The supervisor: wiring. It opens the backend and the database, builds what the producers
share, and runs one task group holding the writer, the signal watcher, the watchdog, the
backend probe and the schedule runner.

The other two rooms: :mod:`gen_service.service.signals` (SIGHUP reload, SIGTERM drain) and
:mod:`gen_service.service.runner` (which phase runs now)."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import structlog

from gen_service import __version__
from gen_service.adapters.backend import Backend, BackendHealth
from gen_service.adapters.factory import open_backend
from gen_service.adapters.gpu import vram_budget_bytes
from gen_service.adapters.metrics import MetricsEndpoint, open_endpoint
from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.adapters.state_file import StateFile
from gen_service.adapters.store import Store
from gen_service.adapters.store.batches import NearDuplicates
from gen_service.adapters.systemd import Notifier, watchdog_loop
from gen_service.config import Config, config_warnings
from gen_service.domain.judging import JudgeLibrary
from gen_service.domain.prompts import PromptLibrary
from gen_service.domain.schedule import next_local_midnight, next_offset_change
from gen_service.errors import BackendUnavailable, StoreError
from gen_service.service.board import ProgressBoard, local_day
from gen_service.service.clock import Clock, SystemClock
from gen_service.service.gate import BackendGate
from gen_service.service.heap import settled_heap
from gen_service.service.live import LiveState
from gen_service.service.producer import Generation
from gen_service.service.progress import progress_console, show_progress
from gen_service.service.regeneration import Regenerations
from gen_service.service.runner import Control, Outcome, ScheduleRunner, sleep_until
from gen_service.service.scheduler import ModelScheduler
from gen_service.service.signals import Reloader, load_judges, target_rows, watch_signals
from gen_service.service.sweep import sweep_near_duplicates
from gen_service.service.view import ServiceView
from gen_service.service.writer import PendingWrite, WriteContext, write_batches

if TYPE_CHECKING:
    from rich.console import Console

log = structlog.get_logger("gen_service.supervisor")

__all__ = ["Outcome", "preflight", "run_service"]


async def run_service(
    cfg: Config,
    *,
    until_done: bool = False,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
    console: Console | None = None,
) -> Outcome:
    """Run until stopped (or, with ``until_done``, until every total target is met).
    ``console``: where progress bars would go (default stderr; ``service.progress`` decides)."""
    clock = clock or SystemClock()
    notifier = notifier or Notifier()
    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    judges = load_judges(cfg)
    bars = progress_console(cfg.service.progress, cfg.service.log_format, console)
    # The endpoint's address is bound first: one that cannot work fails before any request.
    async with (
        open_endpoint(cfg.service.metrics_endpoint(), config_path=cfg.source) as endpoint,
        open_backend(cfg) as backend,
    ):
        health = await preflight(cfg, backend)
        async with Store.open(cfg.service.db, now=clock.now) as store:
            run = await store.start_run(
                version=__version__,
                config_path=str(cfg.source or ""),
                mode=cfg.schedule.mode,
                backend=backend.kind,
                test_double=health.test_double,
            )
            # Every event of this run carries its id (structlog's contextvars).
            with structlog.contextvars.bound_contextvars(run_id=run.run_id):
                return await _supervise(
                    cfg,
                    backend,
                    store,
                    run.run_id,
                    library,
                    judges,
                    until_done,
                    clock,
                    notifier,
                    endpoint=endpoint,
                    bars=bars,
                )


async def _supervise(
    cfg: Config,
    backend: Backend,
    store: Store,
    run_id: int,
    library: PromptLibrary,
    judges: JudgeLibrary | None,
    until_done: bool,
    clock: Clock,
    notifier: Notifier,
    *,
    endpoint: MetricsEndpoint | None = None,
    bars: Console | None = None,
) -> Outcome:
    tz = cfg.service.tzinfo()
    await store.set_targets(target_rows(cfg), tz)
    await use_near_duplicates(store, cfg)
    today = local_day(tz, clock.now())
    board = ProgressBoard(cfg, await store.type_counts(today), today)
    gen = Generation(
        cfg=cfg,
        backend=backend,
        library=library,
        board=board,
        limiters={},
        stopping=anyio.Event(),
        rng=random.Random(),
        gate=BackendGate(
            backend, initial_s=cfg.backend.retry_initial_s, max_s=cfg.backend.retry_max_s
        ),
        clock=clock,
        store=store,
        regenerations=Regenerations(store),
        judges=judges,
    )
    scheduler = ModelScheduler(
        backend,
        store,
        run_id,
        budget_bytes=vram_budget_bytes(cfg.gpu.vram_gb, cfg.gpu.reserve_gb),
        num_parallel=cfg.backend.num_parallel,
    )
    live = LiveState(open_state_file(cfg.service.db), notifier, clock, run_id)
    gen.gate.on_change = live.gate_changed
    scheduler.on_phase = live.set_phase
    control = Control()
    # Bounded: producers wait when the writer falls behind; memory stays flat.
    batches_tx, batches_rx = anyio.create_memory_object_stream[PendingWrite](
        max_buffer_size=cfg.backend.num_parallel * 2
    )
    view = ServiceView(gen, live, scheduler, batches_rx)
    if endpoint is not None:
        endpoint.metrics.watch(view.snapshot, cfg.generate_datatypes())
        await endpoint.metrics.load_judgments(cfg.service.db)
    outcome = Outcome("stopped")
    status = "crashed"
    for warning in config_warnings(cfg):
        log.warning("config.warning", warning=warning)
    log.info(
        "service.started",
        mode=cfg.schedule.mode,
        db=str(cfg.service.db),
        backend=backend.kind,
        url=backend.url,
        vram_budget_gb=None
        if scheduler.budget_bytes is None
        else round(scheduler.budget_bytes / 2**30, 2),
    )

    try:
        # Started: what start-up built lives as long as the service; the collector leaves it
        # alone from here (see heap.py).
        with settled_heap():
            async with anyio.create_task_group() as tg:
                gen.gate.attach(tg)
                writes = WriteContext(
                    store,
                    run_id,
                    board,
                    tz,
                    gate=gen.gate,
                    on_unavailable=cfg.service.store_unavailable,
                    stopping=gen.stopping,
                    grace_s=cfg.service.shutdown_grace_s,
                    observer=None if endpoint is None else endpoint.metrics,
                    clock=gen.clock,
                )
                await tg.start(write_batches, writes, batches_rx)
                if endpoint is not None:
                    await tg.start(endpoint.serve, view.status)
                if bars is not None:
                    tg.start_soon(show_progress, view.snapshot, bars)
                work = anyio.CancelScope()
                signals = anyio.CancelScope()
                reloader = Reloader(gen, store, scheduler, control.request_replan, notifier)
                tg.start_soon(watch_signals, gen, work, signals, reloader)
                # Pings come from the event loop itself: a blocked loop stops them and systemd
                # restarts the service.
                tg.start_soon(watchdog_loop, notifier)
                tg.start_soon(live.heartbeat)
                tg.start_soon(keep_day_offset, store, gen, clock)
                tg.start_soon(gen.checkers.warm, cfg.service.check_workers)
                notifier.ready(f"running {cfg.schedule.mode} schedule, run {run_id}")
                with work:
                    async with batches_tx:
                        runner = ScheduleRunner(
                            gen,
                            scheduler,
                            control,
                            batches_tx,
                            clock,
                            processing=[sweep_near_duplicates],
                        )
                        outcome = await runner.run(until_done)
                signals.cancel()
                tg.cancel_scope.cancel()  # the probe, if one is waiting
        status = "finished" if outcome.reason == "done" else "stopped"
    finally:
        with anyio.CancelScope(shield=True):
            await scheduler.leave_phase(f"service {status}")
            await store.finish_run(run_id, status)
    counts = {d: board.tally(d).accepted for d in gen.cfg.generate_datatypes()}
    log.info("service.stopped", reason=outcome.reason, accepted=counts)
    live.close()
    notifier.close()
    return outcome


async def keep_day_offset(store: Store, gen: Generation, clock: Clock) -> None:
    """Keep the database's UTC offset (what sqlite3 sessions and the views call "today")
    right: refreshed at every local midnight and every daylight-saving change of the zone,
    and at least hourly (the wall clock may step)."""
    while True:
        tz = gen.cfg.service.tzinfo()
        try:
            await store.refresh_day(tz)
        except StoreError as exc:  # a full disk: the writer reports it; try again later
            log.warning("day_offset.unsaved", error=str(exc))
        now = clock.now()
        change = next_offset_change(tz, now) or now + dt.timedelta(days=2)
        due = min(next_local_midnight(tz, now), change, now + dt.timedelta(hours=1))
        await sleep_until(clock, due + dt.timedelta(seconds=1))


async def use_near_duplicates(store: Store, cfg: Config) -> None:
    """Decide near-duplicates with the config's thresholds: the in-memory index is built from
    the stored signatures (at start, and when the cluster threshold changed; under a second
    per 100,000 samples)."""
    started = anyio.current_time()
    rebanded = await store.use_near_duplicates(
        NearDuplicates(cfg.dedup.threshold, cfg.dedup.cluster_threshold)
    )
    if rebanded is not None:
        index = store.near_index
        log.info(
            "dedup.indexed",
            samples=rebanded,
            resigned=index.resigned if index is not None else 0,
            megabytes=round(index.nbytes / 1e6, 1) if index is not None else 0,
            seconds=round(anyio.current_time() - started, 2),
            cluster_threshold=cfg.dedup.cluster_threshold,
        )


def open_state_file(db: Path) -> StateFile | None:
    """The state file beside the database; without it (an unwritable folder) status still
    works from the database, so this is a warning, not an error."""
    state = StateFile(db)
    try:
        state.open()
    except OSError as exc:
        log.warning("state.unavailable", path=str(state.path), error=str(exc))
        return None
    return state


async def preflight(cfg: Config, backend: Backend) -> BackendHealth:
    """Catch an unreachable backend or a missing model before generation starts."""
    health = await backend.health()
    if not health.ok:
        raise BackendUnavailable(health.detail or f"the backend at {backend.url} is down")
    log.info("backend.ready", kind=backend.kind, url=backend.url, version=health.version)
    if health.test_double:
        log.warning(
            "backend.test_double",
            url=backend.url,
            detail="this backend is a test double (gen-service fake-ollama): what it generates "
            "is recorded as test data, not real data, and `gen-service export` leaves it out "
            "unless --include-test-data",
        )
    roles = {cfg.datatypes[d].model for d in cfg.generate_datatypes()}
    if any(p.kind == "validate" for p in cfg.schedule.phases):
        roles.add(cfg.validation.model)
    for role in sorted(roles):
        info = await backend.describe(cfg.models[role].name)
        log.info(
            "model.described",
            role=role,
            model=info.name,
            size_gb=round(info.size_bytes / 2**30, 2),
            capabilities=sorted(info.capabilities),
        )
    return health
