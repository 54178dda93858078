"""Concurrency per model that follows the server: between 1 and ``backend.num_parallel``.

Ollama queues requests beyond its slots (``OLLAMA_NUM_PARALLEL``) instead of refusing them,
so a client that sends more than the server runs only adds waiting: no 429 or 503 ever says
so. What shows it is the answer's own accounting: Ollama reports how long it worked on a
request (``total_duration``), and the time the request took beyond that was spent in its
queue. Over each window of answers, a model whose requests wait for more than
:data:`RAISE_AT` of their time gets one slot fewer; one whose requests barely wait
(:data:`LOWER_AT`) gets one more, up to the configured ``num_parallel``, which is never
exceeded, so the adaptation cannot cause a 503. Backends that do not say how long they worked
(OpenAI-compatible servers) keep ``num_parallel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import structlog

log = structlog.get_logger("gen_service.concurrency")

WINDOW = 8  # answers per decision
RAISE_AT = 0.15  # queue wait share above which the model gets a slot fewer
LOWER_AT = 0.05  # queue wait share below which it gets a slot back


@dataclass(slots=True)
class _Window:
    wait_s: float = 0.0
    wall_s: float = 0.0
    answers: int = 0


@dataclass(slots=True)
class AdaptiveConcurrency:
    windows: dict[str, _Window] = field(default_factory=dict)

    def observe(
        self, model: str, limiter: anyio.CapacityLimiter, wall_s: float, busy_s: float, most: int
    ) -> None:
        """One answer of ``model``: it took ``wall_s`` here, of which the server says it
        worked ``busy_s``."""
        if busy_s <= 0 or wall_s <= 0:
            return  # the server does not say: keep the configured concurrency
        window = self.windows.setdefault(model, _Window())
        window.wait_s += max(0.0, wall_s - busy_s)
        window.wall_s += wall_s
        window.answers += 1
        if window.answers < WINDOW:
            return
        share = window.wait_s / window.wall_s
        self.windows[model] = _Window()
        limit = int(limiter.total_tokens)
        if share > RAISE_AT and limit > 1:
            limiter.total_tokens = limit - 1
        elif share < LOWER_AT and limit < most:
            limiter.total_tokens = limit + 1
        else:
            return
        log.info(
            "concurrency.adjusted",
            model=model,
            slots=int(limiter.total_tokens),
            queue_wait_share=round(share, 3),
            most=most,
        )
