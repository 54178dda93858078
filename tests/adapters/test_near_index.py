"""The in-memory band index against a plain dict of the same pairs: lookups agree through
pending additions, sorted runs and their merges, and removals."""

from __future__ import annotations

import numpy as np

from gen_service.adapters.store import near_index
from gen_service.adapters.store.near_index import BandIndex


def reference_lookup(pairs: dict[int, set[int]], keys: list[int]) -> dict[int, set[int]]:
    return {k: pairs[k] for k in set(keys) if pairs.get(k)}


def as_sets(found: dict[int, list[int]]) -> dict[int, set[int]]:
    return {k: set(v) for k, v in found.items()}


def test_lookups_agree_with_a_dict_through_merges_and_removals(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(near_index, "_MERGE_AT", 40)  # many runs and merges in a small test
    rng = np.random.default_rng(7)
    index, pairs = BandIndex(), {}  # type: ignore[var-annotated]
    shared = rng.integers(0, 2**32, 5, dtype=np.uint32).tolist()  # fingerprints many hold

    def remember(sample_id: int, prints: list[int]) -> None:
        for fp in prints:
            pairs.setdefault(fp, set()).add(sample_id)

    most_runs = 0
    loaded = rng.integers(0, 2**32, (50, 4), dtype=np.uint32)
    loaded[:, 0] = shared[0]
    index.extend(list(range(50)), loaded)
    for sample_id, prints in enumerate(loaded.tolist()):
        remember(sample_id, prints)
    for sample_id in range(50, 400):
        prints = rng.integers(0, 2**32, 4, dtype=np.uint32).tolist()
        prints[sample_id % 4] = shared[sample_id % 5]
        index.add(sample_id, prints)
        remember(sample_id, prints)
        if sample_id % 37 == 0:
            gone = rng.choice(sample_id, 5, replace=False).tolist()
            index.discard(gone)
            for owners in pairs.values():
                owners.difference_update(gone)
        probe = shared + rng.choice(list(pairs), 20).tolist() + [123456789]
        assert as_sets(index.lookup(probe)) == reference_lookup(pairs, probe)
        most_runs = max(most_runs, len(index._runs))
    assert len(index) == sum(len(v) for v in pairs.values())
    assert most_runs > 1  # lookups went through several runs, and merges


def test_an_empty_index_finds_nothing() -> None:
    index = BandIndex()
    assert index.lookup([1, 2, 3]) == {} and len(index) == 0
    index.discard([1])
    index.extend([], np.empty((0, 25), dtype=np.uint32))
    assert len(index) == 0
