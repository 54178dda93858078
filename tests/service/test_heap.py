"""The collector's settings while the service runs (service/heap.py)."""

from __future__ import annotations

import gc

from gen_service.service.heap import settled_heap


def test_the_heap_is_frozen_while_the_service_runs_and_given_back_after() -> None:
    before = gc.get_threshold()
    kept = [[object()] for _ in range(100)]  # start-up's objects, alive
    with settled_heap():
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == before  # young collections keep their pace
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_when_the_service_fails() -> None:
    try:
        with settled_heap():
            raise RuntimeError("crashed")
    except RuntimeError:
        pass
    assert gc.get_freeze_count() == 0
