"""What the running service is doing right now, told to the operator: systemd's STATUS= line
and the state file beside the database that ``gen-service status`` reads (the database is the
record of what was done; this is the present: the phase, the model, a pause and its cause)."""

from __future__ import annotations

import os
from typing import Any

import anyio
import structlog

from gen_service.adapters.state_file import StateFile
from gen_service.adapters.store import iso
from gen_service.adapters.systemd import Notifier
from gen_service.service.clock import Clock
from gen_service.service.gate import GateState

log = structlog.get_logger("gen_service.live")

HEARTBEAT_S = 30.0  # the state file's updated_at moves at least this often


class LiveState:
    def __init__(
        self, file: StateFile | None, notifier: Notifier, clock: Clock, run_id: int
    ) -> None:
        self._file = file
        self._notifier = notifier
        self._clock = clock
        self._run_id = run_id
        self.phase: str | None = None
        self.models: list[str] = []
        self.paused: dict[str, Any] | None = None
        self._warned = False

    def set_phase(self, phase: str | None, models: list[str]) -> None:
        self.phase, self.models = phase, list(models)
        self._publish()

    def gate_changed(self, state: GateState, why: str) -> None:
        """The gate's callback: a pause (or its end) is news for the operator."""
        if state is GateState.OPEN:
            self.paused = None
        else:
            since = self.paused["since"] if self.paused else iso(self._clock.now())
            self.paused = {"state": state.value, "why": why, "since": since}
        self._publish()

    def status_line(self) -> str:
        if self.paused:
            return f"PAUSED: {self.paused['why']}"[:400]
        if self.phase:
            return f"phase {self.phase} ({', '.join(self.models) or 'no model'})"
        return "running"

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "run_id": self._run_id,
            "phase": self.phase,
            "model": ",".join(self.models) or None,
            "paused": self.paused,
            "updated_at": iso(self._clock.now()),
        }

    def _publish(self) -> None:
        self._notifier.status(self.status_line())
        if self._file is not None and not self._file.write(self.snapshot()) and not self._warned:
            self._warned = True  # once: the file lives beside a database that may be in trouble
            log.warning("state.unwritable", path=str(self._file.path))

    async def heartbeat(self) -> None:
        """Keep updated_at fresh, so status can tell a live state from a dead run's."""
        while True:
            await anyio.sleep(HEARTBEAT_S)
            self._publish()

    def close(self) -> None:
        if self._file is not None:
            self.phase, self.paused = None, None
            self._file.write({**self.snapshot(), "stopped": True})
            self._file.close()
