"""Signals and reload: SIGHUP re-reads the config, SIGTERM/SIGINT drain, a second signal cancels.

Drain the arq way: on SIGTERM/SIGINT stop issuing requests, give in-flight ones the grace
period, then cancel the work; the writer commits whatever reached its queue, shielded. SIGHUP
re-reads the config file: a valid one is applied at once (the current phase is re-planned), a
broken one is logged and the old config keeps running."""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio
import anyio.to_thread
import structlog

from gen_service.adapters.prompt_files import load_judge_library, load_prompt_library
from gen_service.adapters.store import Store
from gen_service.adapters.store.batches import NearDuplicates
from gen_service.adapters.systemd import Notifier
from gen_service.config import Config, load_config
from gen_service.domain.judging import JudgeLibrary
from gen_service.errors import ConfigError
from gen_service.service.producer import Generation
from gen_service.service.scheduler import ModelScheduler

log = structlog.get_logger("gen_service.signals")

# Keys that a reload cannot apply: the service keeps its backend and database until restarted.
RESTART_KEYS = (
    "backend.kind",
    "backend.url",
    "service.db",
    "service.metrics_addr",
    "service.progress",
)


class Reloader:
    """Applies a re-read config to the running service."""

    def __init__(
        self,
        gen: Generation,
        store: Store,
        scheduler: ModelScheduler,
        request_replan: Callable[[], None],
        notifier: Notifier,
    ) -> None:
        self._gen = gen
        self._store = store
        self._scheduler = scheduler
        self._request_replan = request_replan
        self.notifier = notifier
        self.reloads = 0

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
            judges = await anyio.to_thread.run_sync(load_judges, new)
        except ConfigError as exc:
            log.error(
                "config.reload_failed",
                path=str(old.source),
                error=str(exc),
                note="still running on the previous config",
            )
            return False
        changes = config_changes(old, new)
        for key in RESTART_KEYS:
            if any(c.startswith(key) for c in changes):
                log.warning(
                    "config.restart_needed",
                    key=key,
                    note="this key takes effect at the next restart",
                )
        self._gen.cfg = new
        self._gen.library = library
        self._gen.judges = judges
        self._gen.resize_limiters()
        self._gen.board.reconfigure(new)
        self._scheduler.num_parallel = new.backend.num_parallel
        await self._store.set_targets(target_rows(new), new.service.tzinfo())
        if new.dedup != old.dedup:
            await self._store.use_near_duplicates(
                NearDuplicates(new.dedup.threshold, new.dedup.cluster_threshold)
            )
        self.reloads += 1
        log.info("config.reloaded", path=str(old.source), changes=changes)
        self._request_replan()
        return True


def load_judges(cfg: Config) -> JudgeLibrary | None:
    """The judge's prompts when the schedule has a validate phase."""
    if not any(p.kind == "validate" for p in cfg.schedule.phases):
        return None
    return load_judge_library(cfg.service.prompts_dir, list(cfg.datatypes))


def target_rows(cfg: Config) -> list[tuple[str, str, int, int]]:
    """(datatype, model, daily, total) per configured data type, for the store's targets."""
    return [
        (name, cfg.models[d.model].name, d.daily_target, d.total_target)
        for name, d in cfg.datatypes.items()
    ]


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


async def watch_signals(
    gen: Generation, work: anyio.CancelScope, own: anyio.CancelScope, reloader: Reloader
) -> None:
    """Handle signals until ``own`` is cancelled: SIGHUP reloads, the first SIGTERM/SIGINT
    drains (``work`` is cancelled after the grace period), a second one cancels at once."""
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
