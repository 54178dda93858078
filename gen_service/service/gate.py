"""The gate: when the backend is down, or the database's disk refuses writes, producers and the
judge pause at it.

States (a small enum rather than loose booleans)::

    OPEN     requests flow
    PROBING  the backend is down; a single task probes it with capped backoff
    PAUSED   the database refuses writes (disk full, read-only); the writer retries its commit

Both causes can hold at once; the gate opens when neither does. A pause reaches the operator
through ``on_change`` (the supervisor puts it into systemd's STATUS= line and the state file
that ``gen-service status`` reads).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

import anyio
import structlog

from gen_service.adapters.backend import Backend
from gen_service.errors import BackendDown, BackendUnavailable

log = structlog.get_logger("gen_service.gate")

BACKEND = "backend"
STORE = "store"


class GateState(enum.Enum):
    OPEN = "open"  # requests flow
    PROBING = "probing"  # backend down: producers wait, one probe retries
    PAUSED = "paused"  # the database refuses writes: producers wait, the writer retries


class BackendGate:
    def __init__(
        self,
        backend: Backend,
        *,
        failures_to_close: int = 3,
        initial_s: float = 1.0,
        max_s: float = 60.0,
        rng: random.Random | None = None,
        on_change: Callable[[GateState, str], None] = lambda state, why: None,
    ) -> None:
        self._backend = backend
        self._failures_to_close = failures_to_close
        self._initial_s = initial_s
        self._max_s = max_s
        self._rng = rng or random.Random()
        self._closed_by: dict[str, str] = {}  # cause -> what the operator is told
        self._opened = anyio.Event()
        self._opened.set()
        self._consecutive = 0
        self.outages = 0
        self.on_change = on_change
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def state(self) -> GateState:
        if BACKEND in self._closed_by:
            return GateState.PROBING
        if STORE in self._closed_by:
            return GateState.PAUSED
        return GateState.OPEN

    @property
    def why(self) -> str:
        """Why the gate is closed ("" when open)."""
        return "; ".join(self._closed_by.values())

    def attach(self, tg: anyio.abc.TaskGroup) -> None:
        """The task group the probe runs in (the supervisor's)."""
        self._tg = tg

    async def wait_open(self) -> None:
        await self._opened.wait()

    # -- causes ------------------------------------------------------------------------------

    def close(self, cause: str, why: str) -> None:
        """Close the gate for ``cause`` (a new ``why`` replaces the old)."""
        was_open = not self._closed_by
        self._closed_by[cause] = why
        if was_open:
            self._opened = anyio.Event()
        self.on_change(self.state, self.why)

    def reopen(self, cause: str) -> None:
        """``cause`` is gone; the gate opens when no other cause holds it."""
        if self._closed_by.pop(cause, None) is None:
            return
        if not self._closed_by:
            self._opened.set()
        self.on_change(self.state, self.why)

    # -- RetryHooks: the retry loop waits at the gate and reports what happened ---------------

    async def before_attempt(self) -> None:
        await self._opened.wait()

    def on_success(self) -> None:
        self._consecutive = 0

    def on_unavailable(self, exc: BackendUnavailable) -> None:
        """Count a retryable failure; close the gate when the backend looks down."""
        self._consecutive += 1
        down = isinstance(exc, BackendDown) or self._consecutive >= self._failures_to_close
        if down and BACKEND not in self._closed_by and self._tg is not None:
            self.outages += 1
            log.warning("backend.down", error=str(exc), consecutive_failures=self._consecutive)
            self.close(BACKEND, f"the backend is down: {exc}")
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
        self._consecutive = 0
        log.info("backend.recovered", attempts=attempt, version=health.version)
        self.reopen(BACKEND)
