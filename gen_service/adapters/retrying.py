"""Retry policy shared by every backend: retry only named, retryable failures, with capped
exponential backoff and jitter, a Retry-After honoured, and truncation answered with a larger
``num_predict`` rather than a wait."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import anyio
import structlog

from gen_service.errors import (
    BackendDown,
    BackendError,
    BackendUnavailable,
    GenServiceError,
    InvalidCompletion,
    TruncatedOutput,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    initial_s: float = 1.0
    max_s: float = 60.0
    max_total_s: float | None = None  # give up early once this much time went by
    num_predict_cap: int = 32768  # truncation retries grow num_predict up to this

    def backoff(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): full jitter."""
        if retry_after is not None:
            return min(self.max_s, retry_after)
        ceiling = min(self.max_s, self.initial_s * 2 ** (retry - 1))
        return float(ceiling * (0.5 + rng.random() / 2))


@dataclass(slots=True)
class Attempts(Generic[T]):
    value: T
    attempts: int
    errors: list[str] = field(default_factory=list)
    num_predict: int = 0
    wasted_tokens: int = 0  # tokens of truncated answers that could not be used


class RetryHooks(Protocol):
    async def before_attempt(self) -> None: ...

    def on_unavailable(self, exc: BackendUnavailable) -> None: ...

    def on_success(self) -> None: ...


class RetriesExhausted(GenServiceError):
    """Every attempt failed with a retryable error; ``last`` is the final one."""

    def __init__(
        self, attempts: int, errors: list[str], last: GenServiceError, wasted_tokens: int = 0
    ) -> None:
        super().__init__(f"gave up after {attempts} attempts: {errors[-1] if errors else last}")
        self.attempts = attempts
        self.errors = errors
        self.last = last
        self.wasted_tokens = wasted_tokens


async def with_retries(
    call: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    num_predict: int,
    rng: random.Random,
    log: structlog.typing.FilteringBoundLogger,
    hooks: RetryHooks | None = None,
    salvage: Callable[[TruncatedOutput], T | None] | None = None,
) -> Attempts[T]:
    """Run ``call(num_predict)`` until it succeeds, retrying retryable failures.

    Non-retryable errors (``BackendRejected`` and anything not a GenServiceError) propagate at
    once; after ``max_retries`` retries :class:`RetriesExhausted` is raised. ``hooks`` let the
    service pause attempts while the backend is down instead of spending retries on it.
    ``salvage`` turns an answer cut at ``length`` into a value when it holds something usable;
    otherwise the retry grows ``num_predict`` (up to the policy's cap)."""
    errors: list[str] = []
    wasted = 0
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        if hooks is not None:
            await hooks.before_attempt()
        try:
            value = await call(num_predict)
        except TruncatedOutput as exc:
            saved = salvage(exc) if salvage is not None else None
            if saved is not None:
                if hooks is not None:
                    hooks.on_success()
                return Attempts(saved, attempt, errors, num_predict, wasted)
            error: GenServiceError = exc
            wasted += exc.tokens
            delay = 0.0
            num_predict = min(policy.num_predict_cap, max(num_predict + 1, num_predict * 2))
        except BackendUnavailable as exc:
            error = exc
            delay = policy.backoff(attempt, rng, exc.retry_after)
            if hooks is not None:
                hooks.on_unavailable(exc)
                if isinstance(exc, BackendDown):
                    delay = 0.0  # the gate's probe does the waiting
        except InvalidCompletion as exc:
            error = exc
            delay = 0.0  # the model answered; sampling again is the remedy, not waiting
        except BackendError:
            raise
        else:
            if hooks is not None:
                hooks.on_success()
            return Attempts(value, attempt, errors, num_predict, wasted)
        errors.append(f"attempt {attempt}: {type(error).__name__}: {error}")
        out_of_time = (
            policy.max_total_s is not None
            and time.monotonic() - started + delay > policy.max_total_s
        )
        if attempt > policy.max_retries or out_of_time:
            raise RetriesExhausted(attempt, errors, error, wasted)
        log.warning(
            "backend.retry_scheduled",
            attempt=attempt,
            error_type=type(error).__name__,
            error=str(error),
            delay_s=round(delay, 2),
            num_predict=num_predict,
        )
        if delay > 0:
            await anyio.sleep(delay)
