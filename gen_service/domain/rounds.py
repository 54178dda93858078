"""How many items a producer asks for next (pure), so that a phase ends with the model's slots
full until its last answers arrive together.

Two things make a phase's end leave the GPU idle. **Rejections**: a producer that asks for
exactly the samples still needed gets fewer accepted (the checks reject some, duplicates are
dropped), so it needs another round, then another, each shorter and on fewer slots. So it
asks for the need divided by the share of items accepted so far (:func:`expected_yield`),
taken at the upper end of what the items seen so far allow: one unlucky early batch must not
make it ask for half as much again as the target, decode time spent on samples nobody needs.
**Uneven ends**: slots free one at a time, so full batches handed out until the need runs dry
end at staggered times, and the last one decodes alone. So once what is left would not give
every slot a full batch, a batch takes what would make every slot end together: a slot's
share of the items still to ask for plus those the batches in flight have yet to write
(:func:`residual_items`, from their age and the measured seconds per item), so the batches
shrink as the end nears; never fewer than :func:`least_items`, since every request pays for
its prompt.
"""

from __future__ import annotations

import math

MIN_YIELD = 0.2  # below this the checks reject nearly everything: asking 5x more is enough


YIELD_Z = 1.645  # one-sided 95%: the yield is rarely higher than this bound says


def expected_yield(accepted: int, returned: int) -> float:
    """The share of returned items that will be accepted, optimistically: the upper Wilson
    score bound of ``accepted / returned`` (1 before anything came back). With few items
    returned the bound stays near 1, so a producer does not over-ask on a noisy estimate;
    with many it closes in on the observed share."""
    if returned <= 0 or accepted >= returned:
        return 1.0
    n = float(returned)
    p = min(1.0, max(0.0, accepted / n))
    z2 = YIELD_Z * YIELD_Z
    centre = p + z2 / (2 * n)
    margin = YIELD_Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    upper = (centre + margin) / (1 + z2 / n)
    return min(1.0, max(MIN_YIELD, upper))


def items_to_ask(need: int, in_flight: int, yield_share: float) -> int:
    """Items still to request: what ``need`` accepted samples take at ``yield_share``, less
    the ``in_flight`` items already asked for."""
    if need <= 0:
        return 0
    wanted = math.ceil(need / max(MIN_YIELD, min(1.0, yield_share)) - 1e-9)
    return max(0, wanted - in_flight)


def least_items(batch_size: int, slots: int) -> int:
    """The smallest batch the end of a phase shrinks to: a slot's share of a full round."""
    return max(1, math.ceil(batch_size / max(1, slots)))


def residual_items(size: int, elapsed_s: float, per_item_s: float | None) -> float:
    """Items a batch of ``size`` in flight for ``elapsed_s`` has yet to write, at
    ``per_item_s`` seconds per item (all of them while nothing has been measured)."""
    if per_item_s is None or per_item_s <= 0:
        return float(size)
    return max(0.0, size - elapsed_s / per_item_s)


def next_batch(unassigned: int, batch_size: int, slots: int, residual: float = 0.0) -> int:
    """The size of the next batch: ``batch_size``, or once ``unassigned`` items would not
    fill every slot with a full batch, a slot's share of the work left, ``unassigned`` plus
    the ``residual`` items the batches in flight have yet to write (at least
    :func:`least_items`, at most ``unassigned``)."""
    slots = max(1, slots)
    cap = min(batch_size, unassigned)
    if unassigned < batch_size * slots:
        share = math.ceil((unassigned + max(0.0, residual)) / slots - 1e-9)
        cap = min(cap, max(least_items(batch_size, slots), share))
    return max(1, cap)


def smoothed(previous: float | None, value: float, weight: float = 0.2) -> float:
    """An exponential moving average (the first value taken as it is)."""
    return value if previous is None else previous + weight * (value - previous)
