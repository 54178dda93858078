"""How far the planner looks, what a fix may suggest, and when a float counts as nothing."""

from __future__ import annotations

MAX_SLOTS = 16  # the largest num_parallel a fix suggests
MAX_DAYS = 3650  # completion dates further out are "not within ten years"
MAX_PASSES = 100_000
EPS = 1e-9  # a quota, a count or a time at most this is nothing
