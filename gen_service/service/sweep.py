"""The near-duplicate sweep of the process phase.

Every accepted sample is checked when it is committed; the sweep catches what was not: samples
written before near-duplicates were checked (an older database) or put back by hand. It gives
each accepted sample without a signature one, in small transactions through the service's own
connection (so the writer is never blocked for long), turning near-copies of earlier samples
into duplicates and giving the rest their cluster.
"""

from __future__ import annotations

import structlog

from gen_service.domain.signing import signature_of
from gen_service.service.runner import ProcessingJob

log = structlog.get_logger("gen_service.sweep")

CHUNK = 200  # samples per transaction


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
