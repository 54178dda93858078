"""Quota steering's view of the database: accepted samples per quota key, per data type,
re-read at most every ``refresh_s`` seconds.

Steering needs the shape of the data set, not its last sample: one ``GROUP BY`` per type a
minute keeps the store's lock free for the writer. The weights themselves come from the pure
:func:`gen_service.domain.facets.steer`, in ``plan_batch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol

import structlog

from gen_service.errors import StoreError

log = structlog.get_logger("gen_service.quotas")

REFRESH_S = 60.0


class QuotaSource(Protocol):
    async def accepted_per_quota(self, datatype: str) -> dict[str, int]: ...


class QuotaCounts:
    """Accepted samples per quota key, per data type, cached for ``refresh_s`` seconds."""

    def __init__(
        self, refresh_s: float = REFRESH_S, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh_s = refresh_s
        self._now = now
        self._counts: dict[str, Mapping[str, int]] = {}
        self._read_at: dict[str, float] = {}

    def counts(self, datatype: str) -> Mapping[str, int]:
        """The last counts read for ``datatype`` (empty before the first read)."""
        return self._counts.get(datatype, MappingProxyType({}))

    async def refresh(self, store: QuotaSource, datatype: str) -> Mapping[str, int]:
        """Re-read ``datatype``'s counts when the last read is older than ``refresh_s``. A
        failed read keeps the old counts: steering on slightly stale numbers beats no batch."""
        read_at = self._read_at.get(datatype)
        if read_at is not None and self._now() - read_at < self.refresh_s:
            return self.counts(datatype)
        self._read_at[datatype] = self._now()  # a failure waits a full interval, too
        try:
            counts = await store.accepted_per_quota(datatype)
        except StoreError as exc:
            log.warning("quota.refresh_failed", datatype=datatype, error=str(exc))
            return self.counts(datatype)
        self._counts[datatype] = MappingProxyType(dict(counts))
        return self._counts[datatype]
