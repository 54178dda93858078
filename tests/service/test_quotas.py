"""Quota steering in the service: counts cached per type and refreshed on an interval, and
plan_batch steering new briefs away from the categories already full."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.config import load_config
from gen_service.domain.datatypes import REGISTRY
from gen_service.errors import StoreError
from gen_service.service.batch import plan_batch
from gen_service.service.producer import Generation
from gen_service.service.quotas import QuotaCounts

pytestmark = pytest.mark.anyio


class FakeStore:
    """What QuotaCounts reads: accepted counts per quota key, or a failure."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self.reads = 0
        self.fail = False

    async def accepted_per_quota(self, datatype: str) -> dict[str, int]:
        self.reads += 1
        if self.fail:
            raise StoreError("database is locked")
        return dict(self.counts)


class Ticks:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_counts_are_read_once_per_interval() -> None:
    """Within refresh_s the cached counts serve every batch; after it, the store is read again."""
    store, now = FakeStore({"grief": 3}), Ticks()
    quotas = QuotaCounts(refresh_s=60, now=now)
    assert quotas.counts("emotional_authenticity") == {}
    assert await quotas.refresh(store, "emotional_authenticity") == {"grief": 3}
    store.counts = {"grief": 9}
    now.t = 59
    assert await quotas.refresh(store, "emotional_authenticity") == {"grief": 3}
    now.t = 61
    assert await quotas.refresh(store, "emotional_authenticity") == {"grief": 9}
    assert store.reads == 2
    await quotas.refresh(store, "dramatic_irony")  # each type has its own clock
    assert store.reads == 3


async def test_a_failed_read_keeps_the_old_counts_and_says_so() -> None:
    """A store error during a refresh logs quota.refresh_failed and steering goes on with the
    last counts it had."""
    store, now = FakeStore({"grief": 3}), Ticks()
    quotas = QuotaCounts(refresh_s=60, now=now)
    await quotas.refresh(store, "emotional_authenticity")
    store.fail, now.t = True, 120
    with capture_logs() as logs:
        counts = await quotas.refresh(store, "emotional_authenticity")
    assert counts == {"grief": 3}
    assert [e["event"] for e in logs] == ["quota.refresh_failed"]
    assert logs[0]["datatype"] == "emotional_authenticity"


class FixedClock:
    def now(self) -> dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def seconds_until(self, moment: dt.datetime) -> float:
        return 0.0


def generation(config: Path) -> Generation:
    """A Generation with what plan_batch reads (config, prompts, rng, clock, quotas)."""
    cfg = load_config(config)
    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    unused = cast(Any, None)
    return Generation(
        cfg=cfg,
        backend=unused,
        library=library,
        board=unused,
        limiters={},
        stopping=unused,
        rng=random.Random(5),
        gate=unused,
        clock=FixedClock(),
        store=unused,
        regenerations=unused,
    )


@pytest.mark.parametrize("history", ["skewed", "even"])
async def test_plan_batch_steers_briefs_by_the_stored_counts(
    write_config: Callable[..., Path], history: str
) -> None:
    """With the stored counts skewed, planned batches go to the empty categories; with them
    even, every batch of 15 holds each situation category once."""
    gen = generation(write_config(url="http://127.0.0.1:9", batch_size=15))
    categories = REGISTRY["emotional_authenticity"].categories()
    full = set(categories[:7])
    counts = {c: (500 if c in full else 0) for c in categories}
    if history == "even":
        counts = dict.fromkeys(categories, 500)
    await gen.quotas.refresh(FakeStore(counts), "emotional_authenticity")
    keys: Counter[str] = Counter()
    for _ in range(20):
        plan = plan_batch(gen, "emotional_authenticity", "p", 15)
        batch = [c.quota_key for c in plan.contexts]
        keys.update(batch)
        if history == "even":
            assert sorted(batch) == sorted(categories)
    if history == "skewed":
        assert sum(keys[c] for c in full) / sum(keys.values()) < 0.05
