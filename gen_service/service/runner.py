"""The schedule runner: which phase runs now, and the producers that fill it.

Sequential mode runs the phases in listed order, each until its data types meet their
per-cycle quota (the daily target), and repeats; clock mode follows the phase at the current
local time until its end, with backfill for the resident model and a preload before the
boundary when both models fit. Signals reach it through :class:`Control` (a reload asks for a
replan) and ``Generation.stopping`` (a drain).

A process phase needs no GPU (:meth:`ScheduleRunner._process`): it runs the processing steps
(:data:`ProcessingStep`, e.g. the near-duplicate sweep) and writes the day's report into
``service.reports_dir``; in clock mode beside the backfill, in sequential mode and then on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from gen_service.adapters.store import Store
from gen_service.config import Config, ModelConfig, PhaseConfig
from gen_service.domain.schedule import slot_at
from gen_service.errors import BackendError, GenServiceError
from gen_service.service.board import local_day
from gen_service.service.clock import Clock
from gen_service.service.judge import Judge
from gen_service.service.producer import Generation, produce
from gen_service.service.report_cmd import write_day_reports
from gen_service.service.scheduler import ModelScheduler
from gen_service.service.writer import PendingVerdicts, PendingWrite

log = structlog.get_logger("gen_service.runner")

IDLE_RESYNC_S = 30.0  # while idle, how often the database's counts are read again
MAX_JUDGE_STALLS = 3  # judging rounds that only fail before the run gives up (exit 69)
JUDGE_POLL_S = 60.0  # in a clock validate phase, how often to look for newly due batches
WALL_CHECK_S = 10.0  # how often a wait for a wall-clock moment looks at the clock again
# A step back smaller than this is clock jitter (an NTP slew), not a reason to change phase.
STEP_TOLERANCE = dt.timedelta(seconds=60)
RESIDENCY_CHECK_S = 30.0  # how often a running phase checks its model is still loaded
PRELOAD_LEAD_S = 120.0  # how long before a boundary the next model may be preloaded


@dataclass(slots=True)
class Outcome:
    reason: str  # "done" | "stopped"
    exit_code: int = 0


class JudgeStalled(BackendError):
    """The judge failed on every due batch, round after round: a broken judge setup."""


@dataclass(frozen=True, slots=True)
class ProcessingJob:
    """What a processing step is given: the process phase, the local day it processes, the
    config in force, the store (the service's one connection), and whether to stop early (the
    service drains)."""

    phase: str
    day: str
    cfg: Config
    store: Store
    stopping: Callable[[], bool]


# A step of every process phase, run in order before the day's report is written, on the event
# loop beside generation: it must not block (heavy work goes to a worker thread). The
# near-duplicate sweep plugs in here: ScheduleRunner(..., processing=[sweep]) or
# runner.processing.append(sweep). A GenServiceError it raises is logged and the phase goes on.
ProcessingStep = Callable[[ProcessingJob], Awaitable[None]]


class Tail:
    """Counts the producers of a phase that still have requests to issue; sets ``event`` when
    none has (the phase's tail: only answers still to come)."""

    def __init__(self, producers: int, event: anyio.Event | None) -> None:
        self._left = producers
        self._event = event

    def reached(self) -> None:
        """One producer has asked for everything it needs (called once per producer)."""
        self._left -= 1
        if self._left <= 0 and self._event is not None:
            self._event.set()


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
        batches: MemoryObjectSendStream[PendingWrite],
        clock: Clock,
        processing: Sequence[ProcessingStep] = (),
    ) -> None:
        self.gen = gen
        self.scheduler = scheduler
        self.control = control
        self.batches = batches
        self.clock = clock
        self.judge_stalls = 0  # consecutive judging rounds that judged nothing and failed
        self.processing = list(processing)
        self.unprocessed = True  # generated or judged since the last process phase

    @property
    def cfg(self) -> Config:
        return self.gen.cfg

    async def run(self, until_done: bool) -> Outcome:
        while not self.gen.stopping.is_set():
            self.control.fresh()
            await self._resync()
            if self.gen.board.all_totals_met() and not await self._judging_pending():
                if until_done:
                    process = [p for p in self.cfg.schedule.phases if p.kind == "process"]
                    if process and self.unprocessed:  # processing catches up before the end
                        await self._process(process[0].name)
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

    async def _resync(self) -> None:
        """Roll the day and take the database's counts: another process (`gen-service
        validate`, a review) may have flagged or restored samples since the last look."""
        day = local_day(self.cfg.service.tzinfo(), self.clock.now())
        self.gen.board.roll_day(day)
        self.gen.board.resync(await self.gen.store.type_counts(day))

    def _judges(self) -> bool:
        return self.gen.judges is not None and any(
            p.kind == "validate" for p in self.cfg.schedule.phases
        )

    async def _judging_pending(self) -> bool:
        """With a validate phase, samples count as done only once their batch is judged."""
        if not self._judges():
            return False
        return await self.gen.store.unjudged_batches(list(self.cfg.datatypes)) > 0

    async def _idle_until_targets_change(self) -> None:
        log.info("schedule.targets_met", note="idle until the config changes (SIGHUP)")
        await self.scheduler.leave_phase("all targets met")
        replan = self.control.replan
        waited = 0.0
        while self.gen.board.all_totals_met() and not self.gen.stopping.is_set():
            if replan.is_set():
                return
            await self.gen.board.wait_changed(1.0)
            waited += 1.0
            if waited >= IDLE_RESYNC_S:  # a review or an outside judge may reopen a target
                waited = 0.0
                await self._resync()

    # sequential: phases in listed order, daily targets as per-cycle quotas

    async def _sequential_cycle(self) -> None:
        replan = self.control.replan
        phases = list(self.cfg.schedule.phases)
        i = 0
        while i < len(phases):
            if self.gen.stopping.is_set() or replan.is_set():
                return
            phase = phases[i]
            if phase.kind == "validate":
                await self._sequential_validate(phase, replan)
                i += 1
                continue
            if phase.kind == "process":
                await self._process(phase.name)
                i += 1
                continue
            chain = [phase]
            while (
                i + len(chain) < len(phases)
                and phases[i + len(chain)].kind == "generate"
                and self._model_names(phases[i + len(chain)]) == self._model_names(phase)
            ):
                chain.append(phases[i + len(chain)])
            await self._generate_chain(chain, replan)
            i += len(chain)

    def _model_names(self, phase: PhaseConfig) -> set[str]:
        return {self.cfg.model_for(d).name for d in phase.datatypes}

    async def _generate_chain(self, chain: list[PhaseConfig], replan: anyio.Event) -> None:
        """Consecutive generate phases on the same model(s): each one starts as soon as the
        one before has asked for everything it needs (its last answers still on their way),
        so the model's slots do not idle between them."""
        async with anyio.create_task_group() as tg:
            before: anyio.Event | None = None
            for phase in chain:
                if before is not None:
                    await before.wait()
                if self.gen.stopping.is_set() or replan.is_set():
                    break
                todo = [d for d in phase.datatypes if self.gen.board.cycle_remaining(d) > 0]
                if not todo:
                    continue
                if before is not None:
                    log.info("phase.handover", phase=phase.name, models=self._names(todo))
                await self.scheduler.leave_phase()  # the row of the phase before, if any
                await self.scheduler.enter_phase(
                    phase.name, phase.kind, self._models(todo), self.cfg.backend.keep_alive
                )
                tail = anyio.Event()
                tg.start_soon(
                    self._generate,
                    phase.name,
                    todo,
                    self.gen.board.cycle_remaining,
                    replan,
                    tail,
                )
                before = tail
        await self.scheduler.leave_phase()

    def _names(self, datatypes: list[str]) -> list[str]:
        return sorted({self.cfg.model_for(d).name for d in datatypes})

    async def _sequential_validate(self, phase: PhaseConfig, replan: anyio.Event) -> None:
        """Judge everything due, with the judge model loaded once for the phase."""
        if not self._judges() or not await self._judging_pending():
            return
        await self.scheduler.enter_phase(
            phase.name, phase.kind, [self._judge_model()], self.cfg.backend.keep_alive
        )
        await self._judge(phase.name, replan)
        await self.scheduler.leave_phase()
        await self._resync()

    def _judge_model(self) -> ModelConfig:
        return self.cfg.models[self.cfg.validation.model]

    async def _judge(self, phase: str, stop: anyio.Event) -> None:
        """One judging round over what is due; its verdicts go through the writer."""
        assert self.gen.judges is not None
        self.unprocessed = True
        async with self.batches.clone() as verdicts:

            async def commit(pending: PendingVerdicts) -> None:
                await verdicts.send(pending)
                await pending.committed.wait()
                if pending.verdict.flagged:
                    self.gen.regenerations.poke()

            judge = Judge(
                self.cfg,
                self.gen.backend,
                self.gen.store,
                self.gen.judges,
                commit,
                gate=self.gen.gate,
                limiter=self.gen.limiter(self._judge_model().name),
            )
            log.info("phase.judging", phase=phase, due=await judge.due())
            done = await judge.judge_due(lambda: stop.is_set() or self.gen.stopping.is_set())
        log.info(
            "phase.judged",
            phase=phase,
            batches=done.batches,
            samples=done.samples,
            flagged=done.flagged,
            failed=done.failed,
        )
        if done.failed and not done.batches:
            self.judge_stalls += 1
            if self.judge_stalls >= MAX_JUDGE_STALLS:
                raise JudgeStalled(
                    f"the judge failed on every due batch {self.judge_stalls} rounds in a row "
                    "(see the judge.failed events); check the judge model "
                    f"{self._judge_model().name!r} and its num_ctx / validation.num_predict"
                )
        else:
            self.judge_stalls = 0

    async def _judge_until(self, phase: str, replan: anyio.Event) -> None:
        """A clock validate phase: judge what is due, look again every JUDGE_POLL_S."""
        while not replan.is_set() and not self.gen.stopping.is_set():
            await self._judge(phase, replan)
            with anyio.move_on_after(JUDGE_POLL_S):
                await replan.wait()

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
        keep_alive = _minutes_text(_utc(slot.end) - _utc(now), extra_minutes=10)
        validating = phase is not None and phase.kind == "validate" and self._judges()
        processing = phase is not None and phase.kind == "process"
        models = [self._judge_model()] if validating else self._models(todo)
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
            tg.start_soon(self._end_at, slot.start, slot.end, replan)
            tg.start_soon(self._watch_residency, name, replan, keep_alive)
            tg.start_soon(self._preload_before, slot.end, replan)
            if processing:  # beside the backfill below: processing needs no GPU
                tg.start_soon(self._process, name)
            if todo:
                await self._generate(name, todo, self.gen.board.daily_remaining, replan)
            if validating:
                await self._judge_until(name, replan)
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

    async def _end_at(self, start: dt.datetime, end: dt.datetime, replan: anyio.Event) -> None:
        """End the slot at its end on the wall clock, or at once when the clock steps back
        before its start (then another phase holds): the right phase runs after a step."""
        while True:
            now = self.clock.now()
            stepped_back = now < start - STEP_TOLERANCE
            if now >= end or stepped_back:
                if stepped_back:
                    log.warning(
                        "clock.stepped_back", phase_started=start.isoformat(), now=now.isoformat()
                    )
                break
            await anyio.sleep(min(self.clock.seconds_until(end), WALL_CHECK_S))
        replan.set()

    async def _watch_residency(self, phase: str, replan: anyio.Event, keep_alive: str) -> None:
        while not replan.is_set():
            await anyio.sleep(RESIDENCY_CHECK_S)
            models = [m for m in self._all_models() if m.name in self.scheduler.current]
            await self.scheduler.check(phase, models, keep_alive)

    async def _preload_before(self, end: dt.datetime, replan: anyio.Event) -> None:
        lead = dt.timedelta(seconds=PRELOAD_LEAD_S)
        await sleep_until(self.clock, end - lead)
        tz = self.cfg.service.tzinfo()
        upcoming = slot_at(self.cfg.schedule.phases, end.astimezone(tz))
        if upcoming.phase is None or replan.is_set():
            return
        assert isinstance(upcoming.phase, PhaseConfig)
        current = [m for m in self._all_models() if m.name in self.scheduler.current]
        nxt = self._models(list(upcoming.phase.datatypes))
        await self.scheduler.preload(
            upcoming.phase.name,
            current,
            nxt,
            _minutes_text(_utc(upcoming.end) - _utc(upcoming.start), 10),
        )

    async def _wait(self, replan: anyio.Event) -> None:
        while not replan.is_set() and not self.gen.stopping.is_set():
            with anyio.move_on_after(1.0):
                await replan.wait()

    async def _process(self, phase: str) -> None:
        """A process phase: the processing steps, then the day's report in all three formats
        into ``service.reports_dir``, written in a worker thread so the event loop (and the
        generation beside it) goes on."""
        day = local_day(self.cfg.service.tzinfo(), self.clock.now())
        log.info("phase.processing", phase=phase, day=day, steps=len(self.processing))
        job = ProcessingJob(phase, day, self.cfg, self.gen.store, self.gen.stopping.is_set)
        for step in self.processing:
            name = getattr(step, "__name__", type(step).__name__)
            try:
                await step(job)
            except GenServiceError as exc:
                log.error("process.step_failed", phase=phase, step=name, error=str(exc))
        try:
            paths = await anyio.to_thread.run_sync(
                write_day_reports, self.cfg, day, self.clock.now()
            )
        except GenServiceError as exc:
            log.error("report.failed", phase=phase, day=day, error=str(exc))
        except Exception as exc:  # a bug in a report must not stop a 24/7 generator
            log.error(
                "report.crashed",
                phase=phase,
                day=day,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
            )
        else:
            log.info("report.written", phase=phase, day=day, paths=[str(p) for p in paths])
        self.unprocessed = False

    # shared

    async def _generate(
        self,
        phase: str,
        datatypes: list[str],
        remaining: Callable[[str], int],
        replan: anyio.Event,
        tail: anyio.Event | None = None,
    ) -> None:
        """Run one producer per data type until the phase's needs are met. ``tail`` is set
        once every producer has asked for all it needs (only answers still to come)."""
        models = sorted({self.cfg.model_for(d).name for d in datatypes})
        issuing = Tail(len(datatypes), tail)
        self.unprocessed = True
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
                    produce,
                    self.gen,
                    datatype,
                    phase,
                    remaining,
                    self.batches.clone(),
                    replan,
                    issuing.reached,
                )
        if tail is not None:
            tail.set()
        log.info(
            "phase.finished",
            phase=phase,
            accepted={d: self.gen.board.tally(d).accepted for d in datatypes},
        )

    def _models(self, datatypes: list[str]) -> list[ModelConfig]:
        return list({self.cfg.model_for(d).name: self.cfg.model_for(d) for d in datatypes}.values())

    def _all_models(self) -> list[ModelConfig]:
        return list(self.cfg.models.values())


async def sleep_until(clock: Clock, moment: dt.datetime) -> None:
    """Sleep until ``moment`` on the wall clock, looking again every WALL_CHECK_S: when the
    clock steps (an NTP correction, a laptop waking up), the wait follows it instead of ending
    an hour early or late."""
    while True:
        remaining = clock.seconds_until(moment)
        if remaining <= 0:
            return
        await anyio.sleep(min(remaining, WALL_CHECK_S))


def _utc(moment: dt.datetime) -> dt.datetime:
    # Two aware datetimes of one zone subtract as wall clocks; a span must be real time.
    return moment.astimezone(dt.UTC)


def _minutes_text(span: dt.timedelta, extra_minutes: int) -> str:
    """An Ollama keep_alive duration that outlives ``span`` by ``extra_minutes``."""
    return f"{int(span.total_seconds() // 60) + extra_minutes}m"
