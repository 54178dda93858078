"""Regeneration of flagged batches (memo: iterative refinement).

A batch the judge flagged is written again from its stored briefs, with the judge's
recommendations in the prompt's ``refinement`` slot; the new batch records which batch it
replaces (``batches.replaces``) and how deep the chain is (``batches.regeneration``). A chain
stops at ``validation.max_regenerations``: past it the flagged batch waits for review and the
producers make fresh batches instead. With ``validation.regenerate_flagged = false`` flagged
batches only wait for review.

The database is the queue (``gen-service validate`` may flag batches from another process), read
at most every :data:`REFRESH_S` seconds per data type; a batch being regenerated is claimed
until its replacement is committed, so two producers never write the same one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import structlog

from gen_service.adapters.store import Store
from gen_service.adapters.store.quality import PendingRegeneration
from gen_service.config import Config
from gen_service.domain.datatypes import ItemContext
from gen_service.domain.judging import refinement_text

log = structlog.get_logger("gen_service.regeneration")

REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Regeneration:
    """A flagged batch to write again: its briefs and the judge's recommendations."""

    batch_id: int
    briefs: list[ItemContext]
    refinement: str
    regeneration: int  # the depth the replacement will have (1 for a first replacement)


class Regenerations:
    """The flagged batches waiting to be written again, per data type."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[str, list[PendingRegeneration]] = {}
        self._fetched: dict[str, float] = {}
        self._claimed: set[int] = set()

    def poke(self) -> None:
        """Something was flagged: read the queue again at the next ask."""
        self._fetched.clear()

    async def take(self, cfg: Config, datatype: str) -> Regeneration | None:
        """The next flagged batch of ``datatype`` to regenerate, claimed; None when none
        waits (or regeneration is off)."""
        if not cfg.validation.regenerate_flagged:
            return None
        now = time.monotonic()
        if now - self._fetched.get(datatype, -REFRESH_S) >= REFRESH_S:
            self._pending[datatype] = await self._store.pending_regenerations(
                datatype, cfg.validation.max_regenerations, tuple(self._claimed)
            )
            self._fetched[datatype] = now
        queue = self._pending.get(datatype, [])
        while queue:
            row = queue.pop(0)
            if row.batch_id in self._claimed:
                continue
            self._claimed.add(row.batch_id)
            log.info(
                "batch.regenerating",
                replaces=row.batch_id,
                datatype=datatype,
                regeneration=row.regeneration + 1,
                briefs=len(row.briefs),
            )
            return Regeneration(
                batch_id=row.batch_id,
                briefs=[ItemContext.from_json(json.loads(b)) for b in row.briefs],
                refinement=refinement_text(row.recommendations, row.issues),
                regeneration=row.regeneration + 1,
            )
        return None

    def release(self, batch_id: int) -> None:
        """The replacement of ``batch_id`` is committed (or failed): stop claiming it; the
        database says from now on whether it still waits."""
        self._claimed.discard(batch_id)
        self._fetched.clear()
