"""The VRAM-aware model scheduler (SPEC §4): at each phase boundary make exactly the phase's
models resident, loading each once, and record what the GPU actually holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from gen_service.adapters.backend import Backend, LoadedModel, RunnerOptions
from gen_service.adapters.store import Store
from gen_service.config import ModelConfig
from gen_service.domain.vram import kv_cache_bytes
from gen_service.errors import BackendError

log = structlog.get_logger("gen_service.scheduler")


@dataclass(frozen=True, slots=True)
class Residency:
    model: str
    loaded_now: bool
    load_s: float
    size_bytes: int
    vram_bytes: int

    @property
    def gpu_share(self) -> float:
        return 1.0 if self.size_bytes <= 0 else min(1.0, self.vram_bytes / self.size_bytes)


class ModelScheduler:
    def __init__(
        self,
        backend: Backend,
        store: Store,
        run_id: int,
        *,
        budget_bytes: int | None,
        num_parallel: int,
    ) -> None:
        self._backend = backend
        self._store = store
        self._run_id = run_id
        self.budget_bytes = budget_bytes
        self.num_parallel = num_parallel
        self._sizes: dict[str, int] = {}
        self._runners: dict[str, RunnerOptions] = {}  # how we loaded each resident model
        self.loads: dict[str, int] = {}  # loads per model over the run (for tests/metrics)
        self.current: list[str] = []
        self.gpu_shares: dict[str, float] = {}  # resident model -> its share in VRAM (Ollama)
        self.phase_id: int | None = None
        # Told of every phase entered (name, models) and left (None, []): the live state.
        self.on_phase: Callable[[str | None, list[str]], None] = lambda phase, models: None

    async def leave_phase(self, note: str | None = None) -> None:
        if self.phase_id is not None:
            await self._store.close_phase(self.phase_id, note)
            self.phase_id = None
            self.on_phase(None, [])

    async def estimate_bytes(self, model: ModelConfig) -> int:
        """Weights plus the KV cache for num_ctx x num_parallel (what Ollama allocates)."""
        if model.name not in self._sizes:
            try:
                self._sizes[model.name] = (await self._backend.describe(model.name)).size_bytes
            except BackendError:
                self._sizes[model.name] = 0
        return self._sizes[model.name] + kv_cache_bytes(model.num_ctx, self.num_parallel)

    async def fits_together(self, models: Sequence[ModelConfig]) -> bool:
        if self.budget_bytes is None:
            return False  # unknown budget: never preload beside another model
        total = 0
        for m in {m.name: m for m in models}.values():
            total += await self.estimate_bytes(m)
        return total <= self.budget_bytes

    async def enter_phase(
        self, phase: str, kind: str, models: Sequence[ModelConfig], keep_alive: str | int
    ) -> list[Residency]:
        """Unload what the phase does not need, load what it does (once), log to phase_log."""
        wanted = {m.name: m for m in models}
        resident = await self._resident()
        for name in resident:
            if name not in wanted:
                await self._unload(name, phase)
        results: list[Residency] = []
        for model in wanted.values():
            results.append(await self._ensure(model, phase, keep_alive, resident))
        self.current = list(wanted)
        self.on_phase(phase, self.current)
        after = await self._resident()
        for i, r in enumerate(results):
            seen = after.get(r.model)
            if seen is not None:
                results[i] = Residency(
                    r.model, r.loaded_now, r.load_s, seen.size_bytes, seen.vram_bytes
                )
        # Only a backend that reports VRAM (Ollama) has a GPU share to warn about; elsewhere
        # there is none (llama.cpp here runs on the CPU, OpenAI servers manage their own).
        reports_vram = self._backend.capabilities.reports_vram
        self.gpu_shares = {r.model: r.gpu_share for r in results} if reports_vram else {}
        for r in results:
            if r.loaded_now:
                partial = reports_vram and r.gpu_share < 0.999
                (log.warning if partial else log.info)(
                    "model.loaded",
                    model=r.model,
                    phase=phase,
                    load_s=round(r.load_s, 2),
                    gpu_share=round(r.gpu_share, 3) if reports_vram else None,
                    note="partly on the CPU: expect fewer tokens/s" if partial else None,
                )
        main = results[0] if results else None
        self.phase_id = await self._store.log_phase(
            self._run_id,
            phase,
            kind,
            model=",".join(wanted) or None,
            load_s=sum(r.load_s for r in results if r.loaded_now) if results else None,
            gpu_share=main.gpu_share if main and reports_vram else None,
        )
        return results

    async def preload(
        self,
        phase: str,
        current: Sequence[ModelConfig],
        upcoming: Sequence[ModelConfig],
        keep_alive: str | int,
    ) -> bool:
        """Load the next phase's models early, only when they fit beside the current ones."""
        new = [m for m in upcoming if m.name not in {c.name for c in current}]
        if not new or not await self.fits_together([*current, *new]):
            return False
        resident = await self._resident()
        for model in new:
            await self._ensure(model, phase, keep_alive, resident)
        log.info("model.preloaded", models=[m.name for m in new], for_phase=phase)
        return True

    async def check(self, phase: str, models: Sequence[ModelConfig], keep_alive: str | int) -> None:
        """Reload a model that vanished (runner crash, eviction) and say so."""
        resident = await self._resident()
        for model in models:
            if model.name not in resident:
                log.warning("model.vanished", model=model.name, phase=phase)
                self._runners.pop(model.name, None)
                await self._ensure(model, phase, keep_alive, resident, reason="reload")

    async def _ensure(
        self,
        model: ModelConfig,
        phase: str,
        keep_alive: str | int,
        resident: dict[str, LoadedModel],
        reason: str = "phase",
    ) -> Residency:
        runner = RunnerOptions(num_ctx=model.num_ctx, num_gpu=model.num_gpu)
        if model.name in resident and self._runners.get(model.name) == runner:
            r = resident[model.name]
            return Residency(model.name, False, 0.0, r.size_bytes, r.vram_bytes)
        load_s = await self._backend.load(model.name, runner, keep_alive)
        self._runners[model.name] = runner
        self.loads[model.name] = self.loads.get(model.name, 0) + 1
        if reason == "reload":
            log.warning("model.reloaded", model=model.name, phase=phase, load_s=round(load_s, 2))
        return Residency(model.name, True, load_s, 0, 0)

    async def _unload(self, name: str, phase: str) -> None:
        try:
            await self._backend.unload(name)
        except BackendError as exc:
            log.warning("model.unload_failed", model=name, error=str(exc))
            return
        self._runners.pop(name, None)
        log.info("model.unloaded", model=name, phase=phase)

    async def _resident(self) -> dict[str, LoadedModel]:
        try:
            return {m.name: m for m in await self._backend.loaded()}
        except BackendError as exc:
            log.warning("model.residency_unknown", error=str(exc))
            return {}
