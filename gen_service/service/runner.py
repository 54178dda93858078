"""The schedule runner: which phase runs now, and the producers that fill it.

Sequential mode runs the phases in listed order, each until its data types meet their
per-cycle quota (the daily target), and repeats; clock mode follows the phase at the current
local time until its end, with backfill for the resident model and a preload before the
boundary when both models fit. Signals reach it through :class:`Control` (a reload asks for a
replan) and ``Generation.stopping`` (a drain)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from gen_service.config import Config, ModelConfig, PhaseConfig
from gen_service.domain.schedule import slot_at
from gen_service.service.board import local_day
from gen_service.service.clock import Clock
from gen_service.service.producer import Generation, produce
from gen_service.service.scheduler import ModelScheduler
from gen_service.service.writer import PendingBatch

log = structlog.get_logger("gen_service.runner")

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

    def request_replan(self) -> None:
        self.replan.set()

    def fresh(self) -> anyio.Event:
        self.replan = anyio.Event()
        return self.replan


class ScheduleRunner:
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
