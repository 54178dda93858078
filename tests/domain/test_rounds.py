"""Sizing a phase's requests so its end leaves no slot idle: asking for what the checks will
reject too, and batches that shrink so the slots' last answers arrive together."""

from __future__ import annotations

import heapq

from hypothesis import given
from hypothesis import strategies as st

from gen_service.domain import rounds


def test_yield_is_one_before_anything_came_back_and_is_clamped() -> None:
    """No history means no discount; a yield near zero is held at MIN_YIELD."""
    assert rounds.expected_yield(0, 0) == 1.0
    assert rounds.expected_yield(5, 5) == 1.0
    assert rounds.expected_yield(1, 1000) == rounds.MIN_YIELD


def test_yield_is_optimistic_on_few_items_and_closes_in_on_many() -> None:
    """A first batch with 2 of 5 rejected (the case that made a target of 30 end at 45 under
    load) does not make the producer ask for 1.67x the need; 3,000 of 4,000 is near 0.75."""
    one_batch = rounds.expected_yield(3, 5)
    assert one_batch > 0.85
    assert rounds.items_to_ask(27, 15, one_batch) <= 17
    many = rounds.expected_yield(3000, 4000)
    assert 0.75 < many < 0.77
    for returned in (5, 20, 100, 1000):  # never below the share actually seen
        assert rounds.expected_yield(returned // 2, returned) >= 0.5


def test_items_to_ask_cover_the_rejections() -> None:
    """12 accepted samples at a yield of 0.6 take 20 items; 8 in flight leave 12 to ask."""
    assert rounds.items_to_ask(12, 0, 0.6) == 20
    assert rounds.items_to_ask(12, 8, 0.6) == 12
    assert rounds.items_to_ask(12, 25, 0.6) == 0
    assert rounds.items_to_ask(0, 0, 0.6) == 0
    assert rounds.items_to_ask(10, 0, 1.0) == 10  # no float noise past an exact division


def test_full_batches_while_every_slot_can_have_one() -> None:
    """With at least a full batch per slot still to ask, batches are batch_size."""
    assert rounds.next_batch(60, 15, 4) == 15
    assert rounds.next_batch(200, 15, 4, residual=30) == 15


def test_a_phase_start_splits_a_small_need_evenly() -> None:
    """24 items and four idle slots: 6 each, as the batches just sent count in full."""
    sizes = []
    left = 24
    residual = 0.0
    for _ in range(4):
        size = rounds.next_batch(left, 10, 4, residual)
        sizes.append(size)
        left -= size
        residual += rounds.residual_items(size, 0.0, None)
    assert sizes == [6, 6, 6, 6]


def test_the_end_shrinks_batches_to_a_slot_share_of_the_work_left() -> None:
    """With 40 items left and three slots mid-batch, a free slot takes a quarter of the work
    left (40 plus what the others have yet to write), never below the least batch."""
    residual = sum(rounds.residual_items(15, elapsed, 1.0) for elapsed in (3.0, 8.0, 12.0))
    assert residual == 12 + 7 + 3
    assert rounds.next_batch(40, 15, 4, residual) == 15
    assert rounds.next_batch(20, 15, 4, residual) == 11  # (20 + 22) / 4
    assert rounds.next_batch(6, 15, 4, 0.0) == 4  # least_items(15, 4)
    assert rounds.next_batch(2, 15, 4, 0.0) == 2  # never more than is left


def _last_answers_spread(sizes_for: str, items: int, batch: int, slots: int) -> float:
    """Simulate slots that write one item per second, starting staggered, until ``items``
    are written; the time between the first slot going idle for good and the last answer."""
    free = [(i * batch / slots, i) for i in range(slots)]  # staggered, as in a steady state
    heapq.heapify(free)
    flight: dict[int, tuple[float, int]] = {}
    left = items
    ends: dict[int, float] = {}
    while left > 0:
        now, slot = heapq.heappop(free)
        flight.pop(slot, None)
        residual = sum(rounds.residual_items(n, now - t, 1.0) for t, n in flight.values())
        if sizes_for == "full":
            size = min(batch, left)
        else:
            size = rounds.next_batch(left, batch, slots, residual)
        left -= size
        flight[slot] = (now, size)
        ends[slot] = now + size
        heapq.heappush(free, (now + size, slot))
    finishes = sorted(ends.get(i, 0.0) for i in range(slots))
    return finishes[-1] - finishes[0]


def test_shrinking_batches_end_the_slots_closer_together() -> None:
    """Against full batches to the end, the slots' last answers arrive much closer together."""
    full = _last_answers_spread("full", 130, 15, 4)
    shrinking = _last_answers_spread("shrinking", 130, 15, 4)
    assert shrinking < full / 2


@given(
    left=st.integers(1, 500),
    batch=st.integers(1, 40),
    slots=st.integers(1, 8),
    residual=st.floats(0, 400),
)
def test_next_batch_stays_in_bounds(left: int, batch: int, slots: int, residual: float) -> None:
    """A batch holds at least one item, never more than batch_size or what is left."""
    size = rounds.next_batch(left, batch, slots, residual)
    assert 1 <= size <= min(batch, left)
