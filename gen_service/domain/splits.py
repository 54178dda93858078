"""Train / validation / test assignment (pure): a sample's split is a function of its
near-duplicate cluster alone.

Hashing the cluster id (sha256, mapped to [0, 1)) against the cumulative ratios means that
near-copies, which share a cluster, never straddle splits (no test sample has a twin in train),
and that a sample keeps its split however much data arrives later: nothing else is an input.
A sample outside every cluster is its own cluster, keyed by its own id; cluster ids come from
the same id space (a cluster is named after a sample in it), so a sample that later turns out
to found a cluster keeps its split.

Other deterministic choices (which samples ``--balance`` keeps, which ones the diversity figure
reads) use :func:`selection_rank`, salted differently, so they are independent of the split: a
selection by lowest rank does not favour one split.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")

# How far the three ratios may sum from 1 (they are typed by people: 0.7,0.15,0.15).
RATIO_TOLERANCE = 1e-6
_SPLIT_SALT = "gen-service/split/"


@dataclass(frozen=True, slots=True)
class SplitRatios:
    """The shares of train, validation and test: non-negative, summing to 1."""

    train: float
    validation: float
    test: float

    def __post_init__(self) -> None:
        values = (self.train, self.validation, self.test)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"each share must be a number ≥ 0; got {_show(values)}")
        total = sum(values)
        if abs(total - 1) > RATIO_TOLERANCE:
            raise ValueError(f"the three shares must sum to 1; {_show(values)} sums to {total:g}")

    @classmethod
    def parse(cls, text: str) -> SplitRatios:
        """``"0.8,0.1,0.1"`` → ratios; ValueError saying what is wrong otherwise."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise ValueError(
                f"expected three comma-separated shares (train,validation,test); got {text!r}"
            )
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"{text!r} holds something that is not a number") from None
        return cls(*values)

    def shares(self) -> dict[Split, float]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


DEFAULT_RATIOS = SplitRatios(0.8, 0.1, 0.1)


def unit_hash(key: str) -> float:
    """A stable, uniform number in [0, 1) for ``key``: the first 8 bytes of its sha256."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def cluster_key(cluster_id: int | None, sample_id: int) -> int:
    """The cluster a sample's split is decided by: its cluster, or itself when it has none."""
    return sample_id if cluster_id is None else cluster_id


def split_of(cluster_id: int | str, ratios: SplitRatios) -> Split:
    """The split of every sample in cluster ``cluster_id``."""
    point = unit_hash(f"{_SPLIT_SALT}{cluster_id}")
    edge = 0.0
    shares = ratios.shares()
    for split in SPLITS:
        edge += shares[split]
        if point < edge:
            return split
    # The shares may sum to a hair under 1: the remainder goes to the last split that has any.
    return next(s for s in reversed(SPLITS) if shares[s] > 0)


def selection_rank(sample_id: int, purpose: str) -> int:
    """A stable pseudo-random rank of a sample for ``purpose`` (e.g. ``"balance"``), in
    [0, 2**63) so SQLite can sort by it; independent of :func:`split_of`."""
    digest = hashlib.sha256(f"gen-service/{purpose}/{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _show(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)
