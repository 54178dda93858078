"""A read-only view of the running service for the operator's displays: the progress bars
(:mod:`.progress`) and the ``/metrics`` gauges and ``/status`` object
(:mod:`gen_service.adapters.metrics`). Everything here is read on demand, at a display's
refresh or a scrape, from state the service keeps anyway."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from anyio.streams.memory import MemoryObjectReceiveStream

from gen_service.adapters.store.readonly import open_readonly
from gen_service.domain.snapshot import ServiceSnapshot, TypeProgress
from gen_service.service.live import LiveState
from gen_service.service.producer import Generation
from gen_service.service.scheduler import ModelScheduler
from gen_service.service.status import dashboard
from gen_service.service.writer import PendingWrite


@dataclass(slots=True)
class ServiceView:
    gen: Generation  # its cfg follows SIGHUP reloads
    live: LiveState
    scheduler: ModelScheduler
    writes: MemoryObjectReceiveStream[PendingWrite] | None = None  # the writer's queue

    def snapshot(self) -> ServiceSnapshot:
        cfg, board, gate = self.gen.cfg, self.gen.board, self.gen.gate
        generated = cfg.generate_datatypes()
        types = []
        for name in generated:
            dtc = cfg.datatypes.get(name)
            tally = board.tally(name)
            types.append(
                TypeProgress(
                    datatype=name,
                    accepted=tally.accepted,
                    accepted_today=tally.accepted_today,
                    daily_target=dtc.daily_target if dtc else 0,
                    total_target=dtc.total_target if dtc else 0,
                )
            )
        phase = next((p for p in cfg.schedule.phases if p.name == self.live.phase), None)
        return ServiceSnapshot(
            phase=self.live.phase,
            models=tuple(self.live.models),
            phase_types=tuple(phase.datatypes) if phase and phase.datatypes else tuple(generated),
            types=tuple(types),
            gate=gate.state.value,
            paused=gate.why or None,
            queue_depth=0 if self.writes is None else self.writes.statistics().current_buffer_used,
            gpu_shares=dict(self.scheduler.gpu_shares),
        )

    def status(self) -> dict[str, Any]:
        """The ``gen-service status --json`` object, from the database read-only (blocking:
        run it in a worker thread). The same function as the command, so both always agree;
        the phase and a pause come from the state file this service keeps."""
        cfg = self.gen.cfg
        conn = open_readonly(cfg.service.db)
        try:
            return dashboard(conn, cfg, now=dt.datetime.now(dt.UTC))
        finally:
            conn.close()
