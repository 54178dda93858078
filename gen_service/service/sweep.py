"""The near-duplicate sweep of the process phase.

Every accepted sample is checked when it is committed; the sweep catches what was not: samples
written before near-duplicates were checked (an older database) or put back by hand. It gives
each accepted sample without a signature one, in small transactions through the service's own
connection (so the writer is never blocked for long), turning near-copies of earlier samples
into duplicates and giving the rest their cluster.
"""

from __future__ import annotations

import json
from typing import Any

import structlog

from gen_service.domain import dedup
from gen_service.domain.content import string_fields
from gen_service.domain.datatypes import REGISTRY
from gen_service.service.runner import ProcessingJob

log = structlog.get_logger("gen_service.sweep")

CHUNK = 200  # samples per transaction


def signature_of(datatype: str, payload: str) -> bytes:
    """The signature of a stored sample's prose; a payload today's model no longer reads is
    signed from all of its text."""
    data: Any = json.loads(payload)
    spec = REGISTRY.get(datatype)
    try:
        assert spec is not None
        text = spec.text_for_dedup(spec.model.model_validate(data))
    except Exception:
        text = "\n".join(t for _, _, t in string_fields(data))
    return dedup.signature_bytes(text)


async def sweep_near_duplicates(job: ProcessingJob) -> None:
    """Sign every accepted sample that has no signature (see the module docstring)."""
    examined = duplicates = 0
    while not job.stopping():
        chunk = await job.store.sweep_near_duplicates(CHUNK, signature_of)
        examined += chunk.examined
        duplicates += chunk.duplicates
        if chunk.examined < CHUNK:
            break
    log.info("dedup.swept", phase=job.phase, examined=examined, duplicates=duplicates)
