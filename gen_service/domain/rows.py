"""A batch's rows: every item checked against its brief, accepted or rejected (pure).

What the writer commits for one batch, computed from the parsed answer: each valid item's
payload, its content problems, its exact-duplicate hash and, when it passes, its MinHash
signature (the near-duplicate check's input: the writer's transaction only looks it up);
each invalid item a rejected row with the schema's error. It imports only the domain, so a
check worker process (:mod:`gen_service.service.checkers`) loads it without the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gen_service.domain.checking import check
from gen_service.domain.content import TextRule
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.datatypes._base import DataTypeSpec, ItemContext
from gen_service.domain.dedup import content_hash, signatures_bytes
from gen_service.domain.parsing import InvalidItem, ParsedBatch, ValidItem, parse_items
from gen_service.domain.records import SampleRow

# json.dumps(value, ensure_ascii=False), without building an encoder for every call.
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def rows_of(
    spec: DataTypeSpec,
    parsed: ParsedBatch,
    contexts: Sequence[ItemContext],
    rules: Mapping[str, TextRule],
    briefs: Sequence[str] | None = None,
) -> list[SampleRow]:
    """Check every item against its brief; every item becomes a row, accepted or rejected,
    carrying the brief it was written from (``briefs``: each brief's JSON, when known)."""
    rows: list[SampleRow] = []
    if briefs is None:
        briefs = [_to_json(c.to_json()) for c in contexts]
    checked = []
    for item in sorted(parsed.valid, key=lambda v: v.index):
        payload = item.sample.model_dump(mode="json")
        brief = contexts[item.index] if item.index < len(contexts) else None
        problems = check(spec, item.sample, brief, rules=rules, payload=payload)
        checked.append((item, payload, brief, problems, spec.text_for_dedup(item.sample)))
    # The near-duplicate check's input, computed here beside the other checks (the writer's
    # transaction only looks it up), for the whole batch at once.
    signatures = iter(signatures_bytes([prose for *_, problems, prose in checked if not problems]))
    for item, payload, brief, problems, prose in checked:
        rows.append(
            SampleRow(
                datatype=spec.name,
                status="rejected" if problems else "accepted",
                payload_json=_to_json(payload),
                # Exact copies are judged on the prose: the same text under new names and
                # numbers is still the same training example.
                content_hash=content_hash(prose),
                reason="; ".join(problems) or None,
                quota_key=brief.quota_key if brief is not None else None,
                item_index=item.index,
                brief_json=briefs[item.index] if item.index < len(briefs) else None,
                signature=None if problems else next(signatures),
            )
        )
    for bad in sorted(parsed.invalid, key=lambda v: v.index):
        rows.append(
            SampleRow(
                datatype=spec.name,
                status="rejected",
                payload_json=json.dumps(bad.raw, ensure_ascii=False, default=str),
                reason=f"schema: {bad.error}",
                item_index=bad.index,
                brief_json=briefs[bad.index] if bad.index < len(briefs) else None,
            )
        )
    return rows


def check_answers(
    spec: DataTypeSpec,
    answers: Sequence[tuple[int, Any]],
    contexts: Sequence[ItemContext],
    briefs: Sequence[str],
    rules: Mapping[str, TextRule],
) -> list[SampleRow]:
    """The rows of a batch's answers: each ``(brief position, item as decoded)`` validated
    against the type's model, then :func:`rows_of`."""
    valid: list[ValidItem] = []
    invalid: list[InvalidItem] = []
    for index, raw in answers:
        parsed = parse_items([raw], spec.model, offset=index)
        valid.extend(parsed.valid)
        invalid.extend(parsed.invalid)
    return rows_of(spec, ParsedBatch(valid, invalid), contexts, rules, briefs)


def check_answers_in_worker(
    datatype: str,
    answers: Sequence[tuple[int, Any]],
    briefs: Sequence[str],
    rules: Mapping[str, TextRule],
) -> list[SampleRow]:
    """:func:`check_answers` as a check worker process runs it: what it is sent pickles fast
    (the type's name, the decoded items, each brief's JSON, which it reads back)."""
    contexts = [ItemContext.from_json(_brief(text)) for text in briefs]
    return check_answers(REGISTRY[datatype], answers, contexts, briefs, rules)


def _brief(text: str) -> Any:
    """A brief's JSON read back: by orjson (a quarter of the time), or by ``json`` for what
    only it reads (``NaN``, which ``json.dumps`` writes for a float that is not a number)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def ready() -> bool:
    """What a check worker is asked first, at start: importing this module loads everything
    a check needs."""
    return True
