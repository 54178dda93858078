"""The backend gate: when the backend is down, producers pause and ONE probe waits for it.

States (a small enum rather than loose booleans)::

    OPEN     requests flow
    PROBING  the backend is down; producers wait; a single task probes with capped backoff
"""

from __future__ import annotations

import enum
import random

import anyio
import structlog

from gen_service.adapters.backend import Backend
from gen_service.errors import BackendDown, BackendUnavailable

log = structlog.get_logger("gen_service.gate")


class GateState(enum.Enum):
    OPEN = "open"  # requests flow
    PROBING = "probing"  # backend down: producers wait, one probe retries


class BackendGate:
    def __init__(
        self,
        backend: Backend,
        *,
        failures_to_close: int = 3,
        initial_s: float = 1.0,
        max_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._backend = backend
        self._failures_to_close = failures_to_close
        self._initial_s = initial_s
        self._max_s = max_s
        self._rng = rng or random.Random()
        self.state = GateState.OPEN
        self._opened = anyio.Event()
        self._opened.set()
        self._consecutive = 0
        self.outages = 0
        self._tg: anyio.abc.TaskGroup | None = None

    def attach(self, tg: anyio.abc.TaskGroup) -> None:
        """The task group the probe runs in (the supervisor's)."""
        self._tg = tg

    async def wait_open(self) -> None:
        await self._opened.wait()

    # RetryHooks: the retry loop waits at the gate and reports what happened.
    async def before_attempt(self) -> None:
        await self._opened.wait()

    def on_success(self) -> None:
        self._consecutive = 0

    def on_unavailable(self, exc: BackendUnavailable) -> None:
        """Count a retryable failure; close the gate when the backend looks down."""
        self._consecutive += 1
        down = isinstance(exc, BackendDown) or self._consecutive >= self._failures_to_close
        if down and self.state is GateState.OPEN and self._tg is not None:
            self.state = GateState.PROBING
            self._opened = anyio.Event()
            self.outages += 1
            log.warning("backend.down", error=str(exc), consecutive_failures=self._consecutive)
            self._tg.start_soon(self._probe, name="backend-probe")

    async def _probe(self) -> None:
        delay = self._initial_s
        attempt = 0
        while True:
            attempt += 1
            wait = min(self._max_s, delay) * (0.5 + self._rng.random() / 2)
            log.info("backend.probe_scheduled", attempt=attempt, delay_s=round(wait, 2))
            await anyio.sleep(wait)
            health = await self._backend.health()
            if health.ok:
                break
            delay = min(self._max_s, delay * 2)
        self.state = GateState.OPEN
        self._consecutive = 0
        self._opened.set()
        log.info("backend.recovered", attempts=attempt, version=health.version)
