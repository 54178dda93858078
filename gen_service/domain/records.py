"""Value objects that travel from producers to the writer (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

SampleStatus = Literal["accepted", "rejected", "duplicate", "flagged"]


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One parsed item. Producers send ``accepted`` or ``rejected``; the writer decides
    ``duplicate`` because only it sees every committed sample."""

    datatype: str
    status: SampleStatus
    payload_json: str
    content_hash: str | None = None
    reason: str | None = None
    quota_key: str | None = None
    item_index: int | None = None  # its position in the request, which is its brief's
    brief_json: str | None = None  # the brief it was written from (provenance)
    signature: bytes | None = None  # MinHash signature of its prose (accepted samples)


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One request to the model and everything it produced, committed in one transaction."""

    datatype: str
    model: str
    phase: str
    status: Literal["ok", "failed"]
    attempts: int
    requested: int
    temperature: float
    num_predict: int
    seed: int
    created_at: str  # UTC ISO-8601
    day: str  # the calendar day in the configured time zone, YYYY-MM-DD
    error: str | None = None
    prompt_tokens: int = 0
    eval_tokens: int = 0  # every decoded token of every attempt, thinking included
    wasted_tokens: int = 0  # of those, the ones thrown away (failed attempts, cut-off tails)
    total_s: float = 0.0
    load_s: float = 0.0
    eval_s: float = 0.0
    latency_s: float = 0.0
    samples: tuple[SampleRow, ...] = field(default_factory=tuple)
    # Provenance: the prompt template version, the few-shot examples, every brief asked for.
    template_hash: str | None = None
    example_ids: tuple[str, ...] = ()
    briefs_json: str | None = None
    # Regeneration: the flagged batch this one replaces, how many replacements deep it is,
    # and the judge's recommendations it was asked to address.
    replaces: int | None = None
    regeneration: int = 0
    refinement: str | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    batch_id: int
    accepted: int
    rejected: int
    duplicates: int
