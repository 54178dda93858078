"""How producers size a phase's last requests: the need divided by the share of items
accepted so far, and batches that shrink to a slot's share of the work left."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.adapters.store import TypeCounts
from gen_service.config import load_config
from gen_service.service.board import ProgressBoard
from gen_service.service.producer import Generation, batch_size, unassigned

pytestmark = pytest.mark.anyio

TYPE = "emotional_authenticity"


def generation(config: Path, counts: dict[str, TypeCounts]) -> Generation:
    """A Generation with what the sizing reads: the config, the prompts, the board."""
    cfg = load_config(config)
    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    unused = cast(Any, None)
    return Generation(
        cfg=cfg,
        backend=unused,
        library=library,
        board=ProgressBoard(cfg, counts, "2026-11-26"),
        limiters={},
        stopping=unused,
        rng=random.Random(5),
        gate=unused,
        clock=unused,
        store=unused,
        regenerations=unused,
    )


async def test_the_need_is_divided_by_the_share_accepted(
    write_config: Callable[..., Path],
) -> None:
    """With 3,000 of 4,000 items accepted so far, 15 more samples take 20 items; those in
    flight count toward them."""
    counts = {TYPE: TypeCounts(accepted=3000, rejected=800, duplicates=200)}
    gen = generation(write_config(target=100, types=(TYPE,)), counts)
    assert unassigned(gen, TYPE, 15, 0) == 20
    assert unassigned(gen, TYPE, 15, 8) == 12
    assert unassigned(gen, TYPE, 15, 20) == 0


async def test_a_type_without_history_asks_for_the_bare_need(
    write_config: Callable[..., Path],
) -> None:
    """Before anything came back there is no discount."""
    gen = generation(write_config(target=100, types=(TYPE,)), {})
    assert unassigned(gen, TYPE, 15, 4) == 11


async def test_the_last_batches_take_a_slot_share_of_the_work_left(
    write_config: Callable[..., Path],
) -> None:
    """Plenty left: full batches. Near the end: a quarter of what is left plus what the
    batches in flight have yet to write, not a full batch for the first slot to free up."""
    gen = generation(write_config(target=100, types=(TYPE,), batch_size=6), {})
    slots = anyio.CapacityLimiter(4)
    assert batch_size(gen, TYPE, 40, slots) == 6
    assert batch_size(gen, TYPE, 10, slots, residual=6.0) == 4  # (10 + 6) / 4
    assert batch_size(gen, TYPE, 10, slots, residual=0.0) == 3  # at least 6 / 4
    assert batch_size(gen, TYPE, 1, slots) == 1
