"""The garbage collector, set for a long-running service once it has started.

Python's cyclic collector walks the young container objects every 700 allocations and, now
and then, the whole heap. Start-up leaves a large heap that lives as long as the service (the
modules, the prompt library, the near-duplicate index), and every full collection walked all
of it again. So once started, the heap is collected once and frozen (:func:`gc.freeze`: the
collector no longer walks it). Measured on the overhead benchmark (gc.callbacks, runs of
10,000 samples): the event loop's process spent 30-37 us a sample in the collector before,
14-17 after.

Young collections keep their default pace. Running them every 10,000 allocations instead
saved another ~10 us a sample but held a batch's garbage cycles (and the request bodies and
answers they reach) longer: RSS swung by up to 45 MB over the memory benchmark and its peak
growth passed SPEC §9.3's 50 MB (``scripts/bench.py memory --samples 100000``: +51.4 MB at
the highest, against +20 to +23 MB with the default pace, frozen or not).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def settled_heap() -> Iterator[None]:
    """Collect and freeze what start-up left, until the block ends; then the frozen objects
    are collectable again (a process that runs the service more than once: the tests)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
