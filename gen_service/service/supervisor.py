"""The supervisor: one task group holding the writer, the signal watcher, the backend probe and
the schedule.

Drain the arq way: on SIGTERM/SIGINT stop issuing requests, give in-flight ones the grace
period, then cancel; the writer commits whatever reached its queue, shielded. SIGHUP re-reads
the config: a valid one is applied at once (the current phase is re-planned), a broken one is
logged and the old config keeps running."""

from __future__ import annotations

import datetime as dt
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from gen_service import __version__
from gen_service.adapters.backend import Backend
from gen_service.adapters.factory import open_backend
from gen_service.adapters.gpu import vram_budget_bytes
from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.adapters.store import Store
from gen_service.adapters.systemd import Notifier, watchdog_loop
from gen_service.config import Config, ModelConfig, PhaseConfig, load_config
from gen_service.domain.schedule import slot_at
from gen_service.errors import BackendUnavailable, ConfigError
from gen_service.service.board import ProgressBoard, local_day
from gen_service.service.clock import Clock, SystemClock
from gen_service.service.gate import BackendGate
from gen_service.service.producer import Generation, produce
from gen_service.service.scheduler import ModelScheduler
from gen_service.service.writer import PendingBatch, write_batches

log = structlog.get_logger("gen_service.supervisor")

RESIDENCY_CHECK_S = 30.0  # how often a running phase checks its model is still loaded
PRELOAD_LEAD_S = 120.0  # how long before a boundary the next model may be preloaded


@dataclass(slots=True)
class Outcome:
    reason: str  # "done" | "stopped"
    exit_code: int = 0


@dataclass(slots=True)
class Control:
    """What signals change while the schedule runs."""

    replan: anyio.Event = field(default_factory=anyio.Event)  # end the phase, plan again
    reloads: int = 0

    def request_replan(self) -> None:
        self.replan.set()

    def fresh(self) -> anyio.Event:
        self.replan = anyio.Event()
        return self.replan


async def run_service(
    cfg: Config,
    *,
    until_done: bool = False,
    clock: Clock | None = None,
    notifier: Notifier | None = None,
) -> Outcome:
    """Run until stopped (or, with ``until_done``, until every total target is met)."""
    clock = clock or SystemClock()
    notifier = notifier or Notifier()
    tz = cfg.service.tzinfo()
    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    async with open_backend(cfg) as backend:
        await preflight(cfg, backend)
        async with Store.open(cfg.service.db) as store:
            run = await store.start_run(
                version=__version__, config_path=str(cfg.source or ""), mode=cfg.schedule.mode
            )
            await store.set_targets(_targets(cfg), tz)
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
            )
            scheduler = ModelScheduler(
                backend,
                store,
                run.run_id,
                budget_bytes=vram_budget_bytes(cfg.gpu.vram_gb, cfg.gpu.reserve_gb),
                num_parallel=cfg.backend.num_parallel,
            )
            control = Control()
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
                vram_budget_gb=None
                if scheduler.budget_bytes is None
                else round(scheduler.budget_bytes / 2**30, 2),
            )
            try:
                async with anyio.create_task_group() as tg:
                    gen.gate.attach(tg)
                    await tg.start(write_batches, store, run.run_id, batches_rx, board, tz)
                    work = anyio.CancelScope()
                    signals = anyio.CancelScope()
                    reloader = _Reloader(gen, store, scheduler, control, tz, notifier)
                    tg.start_soon(_watch_signals, gen, work, signals, reloader)
                    # Pings come from the event loop itself: a blocked loop stops them and
                    # systemd restarts the service.
                    tg.start_soon(watchdog_loop, notifier)
                    notifier.ready(f"running {cfg.schedule.mode} schedule, run {run.run_id}")
                    with work:
                        async with batches_tx:
                            schedule = _Schedule(gen, scheduler, control, batches_tx, clock)
                            outcome = await schedule.run(until_done)
                    signals.cancel()
                    tg.cancel_scope.cancel()  # the probe, if one is waiting
                status = "finished" if outcome.reason == "done" else "stopped"
            finally:
                with anyio.CancelScope(shield=True):
                    await scheduler.leave_phase(f"service {status}")
                    await store.finish_run(run.run_id, status)
            counts = {d: board.tally(d).accepted for d in gen.cfg.generate_datatypes()}
            log.info("service.stopped", reason=outcome.reason, accepted=counts)
            notifier.close()
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


# -- signals and reload ----------------------------------------------------------------------


class _Reloader:
    def __init__(
        self,
        gen: Generation,
        store: Store,
        scheduler: ModelScheduler,
        control: Control,
        tz: dt.tzinfo,
        notifier: Notifier,
    ) -> None:
        self._gen = gen
        self._store = store
        self._scheduler = scheduler
        self._control = control
        self._tz = tz
        self.notifier = notifier

    async def reload(self) -> bool:
        """Re-read the config file; apply it if valid, keep the old one if not."""
        old = self._gen.cfg
        if old.source is None:
            log.warning("config.reload_skipped", reason="the config did not come from a file")
            return False
        try:
            new = await anyio.to_thread.run_sync(load_config, old.source)
            library = await anyio.to_thread.run_sync(
                load_prompt_library, new.service.prompts_dir, list(new.datatypes)
            )
        except ConfigError as exc:
            log.error(
                "config.reload_failed",
                path=str(old.source),
                error=str(exc),
                note="still running on the previous config",
            )
            return False
        changes = config_changes(old, new)
        for key in ("backend.kind", "backend.url", "service.db"):
            if any(c.startswith(key) for c in changes):
                log.warning(
                    "config.restart_needed",
                    key=key,
                    note="this key takes effect at the next restart",
                )
        self._gen.cfg = new
        self._gen.library = library
        self._gen.resize_limiters()
        self._gen.board.reconfigure(new)
        self._scheduler.num_parallel = new.backend.num_parallel
        await self._store.set_targets(_targets(new), self._tz)
        self._control.reloads += 1
        log.info("config.reloaded", path=str(old.source), changes=changes)
        self._control.request_replan()
        return True


def config_changes(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ, e.g. 'datatypes.dramatic_irony.daily_target: 10 -> 20'."""
    changes: list[str] = []

    def walk(a: object, b: object, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{i}]")
        elif a != b:
            changes.append(f"{path}: {a!r} -> {b!r}")

    walk(old.model_dump(mode="json"), new.model_dump(mode="json"), "")
    return changes


async def _watch_signals(
    gen: Generation, work: anyio.CancelScope, own: anyio.CancelScope, reloader: _Reloader
) -> None:
    with own, anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
        async for signum in sigs:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                log.info("service.reload_requested", signal=name)
                reloader.notifier.reloading("reloading the config")
                applied = await reloader.reload()
                reloader.notifier.ready("config reloaded" if applied else "config reload refused")
                continue
            if gen.stopping.is_set():
                log.warning("service.cancelling", signal=name)
                work.cancel()
                continue
            grace = gen.cfg.service.shutdown_grace_s
            log.info("service.draining", signal=name, grace_s=grace)
            reloader.notifier.stopping(f"draining, up to {grace:g} s")
            gen.stopping.set()
            gen.board.poke()

            async def cancel_after_grace(grace: float = grace) -> None:
                await anyio.sleep(grace)
                log.warning("service.grace_expired", grace_s=grace)
                work.cancel()

            # The grace timer runs beside this loop, so a second signal still cancels at once.
            async with anyio.create_task_group() as timers:
                timers.start_soon(cancel_after_grace)
                async for again in sigs:
                    if again != signal.SIGHUP:
                        log.warning("service.cancelling", signal=signal.Signals(again).name)
                        work.cancel()
                        timers.cancel_scope.cancel()
                        break


# -- the schedule ----------------------------------------------------------------------------


class _Schedule:
    def __init__(
        self,
        gen: Generation,
        scheduler: ModelScheduler,
        control: Control,
        batches: MemoryObjectSendStream[PendingBatch],
        clock: Clock,
    ) -> None:
        self.gen = gen
        self.scheduler = scheduler
        self.control = control
        self.batches = batches
        self.clock = clock

    @property
    def cfg(self) -> Config:
        return self.gen.cfg

    async def run(self, until_done: bool) -> Outcome:
        while not self.gen.stopping.is_set():
            self.control.fresh()
            self.gen.board.roll_day(local_day(self.cfg.service.tzinfo(), self.clock.now()))
            if self.gen.board.all_totals_met():
                if until_done:
                    return Outcome("done")
                await self._idle_until_targets_change()
                continue
            if self.cfg.schedule.mode == "sequential":
                await self._sequential_cycle()
                if not self.control.replan.is_set():
                    self.gen.board.new_cycle()
            else:
                await self._clock_slot()
        return Outcome("stopped")

    async def _idle_until_targets_change(self) -> None:
        log.info("schedule.targets_met", note="idle until the config changes (SIGHUP)")
        await self.scheduler.leave_phase("all targets met")
        replan = self.control.replan
        while self.gen.board.all_totals_met() and not self.gen.stopping.is_set():
            if replan.is_set():
                return
            await self.gen.board.wait_changed(1.0)

    # sequential: phases in listed order, daily targets as per-cycle quotas

    async def _sequential_cycle(self) -> None:
        replan = self.control.replan
        for phase in self.cfg.schedule.phases:
            if self.gen.stopping.is_set() or replan.is_set():
                return
            if phase.kind != "generate":
                log.debug(
                    "phase.skipped",
                    phase=phase.name,
                    kind=phase.kind,
                    reason="validation and processing arrive in a later release",
                )
                continue
            todo = [d for d in phase.datatypes if self.gen.board.cycle_remaining(d) > 0]
            if todo:
                await self.scheduler.enter_phase(
                    phase.name, phase.kind, self._models(todo), self.cfg.backend.keep_alive
                )
                await self._generate(phase.name, todo, self.gen.board.cycle_remaining, replan)
                await self.scheduler.leave_phase()

    # clock: the phase at the current local time, until its end

    async def _clock_slot(self) -> None:
        tz = self.cfg.service.tzinfo()
        now = self.clock.now().astimezone(tz)
        slot = slot_at(self.cfg.schedule.phases, now)
        phase = slot.phase
        replan = self.control.replan
        assert phase is None or isinstance(phase, PhaseConfig)
        name = phase.name if phase else "idle"
        kind = phase.kind if phase else "idle"
        todo = (
            [d for d in phase.datatypes if self.gen.board.daily_remaining(d) > 0]
            if phase is not None and phase.kind == "generate"
            else []
        )
        keep_alive = _minutes_text(slot.end - now, extra_minutes=10)
        models = self._models(todo)
        if not models and self.cfg.schedule.backfill and self.scheduler.current:
            models = [m for m in self._all_models() if m.name in self.scheduler.current]
        await self.scheduler.enter_phase(name, kind, models, keep_alive)
        log.info(
            "phase.slot",
            phase=name,
            kind=kind,
            ends=slot.end.isoformat(timespec="minutes"),
            datatypes=todo,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._end_at, slot.end, replan)
            tg.start_soon(self._watch_residency, name, replan, keep_alive)
            tg.start_soon(self._preload_before, slot.end, replan)
            if todo:
                await self._generate(name, todo, self.gen.board.daily_remaining, replan)
            if self.cfg.schedule.backfill and not replan.is_set():
                await self._backfill(name, replan)
            if not replan.is_set() and not self.gen.stopping.is_set():
                log.info(
                    "phase.waiting",
                    phase=name,
                    until=slot.end.isoformat(timespec="minutes"),
                    reason="daily targets met" if todo or phase else "no phase",
                )
            await self._wait(replan)
            tg.cancel_scope.cancel()
        await self.scheduler.leave_phase()

    async def _backfill(self, phase: str, replan: anyio.Event) -> None:
        """Keep the resident model busy with other types still under their daily target."""
        resident = set(self.scheduler.current)
        extra = [
            d
            for d in self.cfg.generate_datatypes()
            if self.cfg.model_for(d).name in resident and self.gen.board.daily_remaining(d) > 0
        ]
        if extra:
            log.info("phase.backfill", phase=phase, datatypes=extra)
            await self._generate(phase, extra, self.gen.board.daily_remaining, replan)

    async def _end_at(self, end: dt.datetime, replan: anyio.Event) -> None:
        await anyio.sleep(self.clock.seconds_until(end))
        replan.set()

    async def _watch_residency(self, phase: str, replan: anyio.Event, keep_alive: str) -> None:
        while not replan.is_set():
            await anyio.sleep(RESIDENCY_CHECK_S)
            models = [m for m in self._all_models() if m.name in self.scheduler.current]
            await self.scheduler.check(phase, models, keep_alive)

    async def _preload_before(self, end: dt.datetime, replan: anyio.Event) -> None:
        lead = dt.timedelta(seconds=PRELOAD_LEAD_S)
        await anyio.sleep(self.clock.seconds_until(end - lead))
        tz = self.cfg.service.tzinfo()
        upcoming = slot_at(self.cfg.schedule.phases, end.astimezone(tz))
        if upcoming.phase is None or replan.is_set():
            return
        assert isinstance(upcoming.phase, PhaseConfig)
        current = [m for m in self._all_models() if m.name in self.scheduler.current]
        nxt = self._models(list(upcoming.phase.datatypes))
        await self.scheduler.preload(
            upcoming.phase.name, current, nxt, _minutes_text(upcoming.end - upcoming.start, 10)
        )

    async def _wait(self, replan: anyio.Event) -> None:
        while not replan.is_set() and not self.gen.stopping.is_set():
            with anyio.move_on_after(1.0):
                await replan.wait()

    # shared

    async def _generate(
        self,
        phase: str,
        datatypes: list[str],
        remaining: Callable[[str], int],
        replan: anyio.Event,
    ) -> None:
        models = sorted({self.cfg.model_for(d).name for d in datatypes})
        log.info(
            "phase.started",
            phase=phase,
            datatypes=datatypes,
            models=models,
            needed={d: remaining(d) for d in datatypes},
        )
        async with anyio.create_task_group() as tg:
            for datatype in datatypes:
                tg.start_soon(
                    produce, self.gen, datatype, phase, remaining, self.batches.clone(), replan
                )
        log.info(
            "phase.finished",
            phase=phase,
            accepted={d: self.gen.board.tally(d).accepted for d in datatypes},
        )

    def _models(self, datatypes: list[str]) -> list[ModelConfig]:
        return list({self.cfg.model_for(d).name: self.cfg.model_for(d) for d in datatypes}.values())

    def _all_models(self) -> list[ModelConfig]:
        return list(self.cfg.models.values())


def _minutes_text(span: dt.timedelta, extra_minutes: int) -> str:
    """An Ollama keep_alive duration that outlives ``span`` by ``extra_minutes``."""
    return f"{int(span.total_seconds() // 60) + extra_minutes}m"
