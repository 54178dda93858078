"""The GPU's throughput: decoding shared by a model's requests, and the limit it sets.

**Decode rate.** One request alone decodes at ``alone(m) = tokens_per_s(m) x offload_factor(m)``:
the model's ``FakeModel.tokens_per_s`` (or ``FakeConfig.tokens_per_s`` when it has none),
slowed by partial offload, ``offload_factor = CPU_ONLY_FACTOR + (1 - CPU_ONLY_FACTOR) x
gpu_share`` with ``gpu_share = size_vram / size`` as ``/api/ps`` shows it: full speed all on
the GPU, a tenth all on the CPU, the speed falling in proportion to the share that does not
fit. With ``k`` requests decoding at once, the model's aggregate rate is
``alone(m) x k ** SHARING_EXPONENT`` (0.6: batching helps, sub-linearly) and each request gets
``1/k`` of it. ``Decoder`` simulates this piecewise: the rate changes exactly when a request
starts or finishes (processor sharing), on a clock that is the real one divided by
``time_scale``. Prompt evaluation takes ``PREFILL_SPEEDUP`` times less per token than decoding
alone, and does not count as decoding. Like Ollama's runner, each model keeps one prompt cache
per slot (:class:`PromptCache`): a request takes the free slot whose last prompt shares the
longest prefix with its own and evaluates only the rest, so requests that repeat a static
prefix (system text, instructions, examples) pay for it once per slot.

**The throughput limit** (``FakeStats.limit_tokens``) is ``∫ max_rate(owner(t)) dt`` over
simulated time, where ``owner(t)`` is the model of the most recent chat request that was not an
unload (``keep_alive: 0`` without messages), so load and swap time count as lost capacity, and
``max_rate(m) = alone(m) x num_parallel ** SHARING_EXPONENT`` is the rate with every slot
decoding (at the GPU share ``m`` has, or had when last loaded; full before its first load).
Decoded tokens never exceed it over a window in which the owner is the model decoding, so
``tokens_generated / limit_tokens`` is the share of the GPU's capacity a client used.
``reset_stats`` starts a new window; at time scale 0 nothing takes time, and the limit and its
window stay 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gen_service.testing.fake_ollama._stats import Counters

SHARING_EXPONENT = 0.6
CPU_ONLY_FACTOR = 0.1
PREFILL_SPEEDUP = 20.0
_EPSILON = 1e-9  # tokens: float noise below this is "done"


def offload_factor(size_vram: int, size: int) -> float:
    """How much of its full speed a model with ``size_vram`` of ``size`` bytes on the GPU has."""
    gpu_share = 1.0 if size <= 0 else min(1.0, size_vram / size)
    return CPU_ONLY_FACTOR + (1.0 - CPU_ONLY_FACTOR) * gpu_share


def aggregate_rate(alone: float, decoding: int) -> float:
    """A model's total decode rate with ``decoding`` requests at once."""
    return alone * decoding**SHARING_EXPONENT if decoding > 0 else 0.0


@dataclass(eq=False)
class Decode:
    """One request's decoding: ``tokens`` to produce, ``done`` so far (times are monotonic)."""

    model: str
    tokens: int
    started: float
    done: float = 0.0
    counted: int = 0  # of ``done``, what the counters already hold
    finished: float | None = None  # when the simulation finished it (not when anyone noticed)


@dataclass
class Decoder:
    """Processor-sharing decode of one model's requests, on the real clock.

    ``alone`` is the tokens per *real* second one request gets alone (the simulated rate over
    the time scale). Not thread-safe: the GPU calls it under its lock.
    """

    alone: float
    last: float
    active: list[Decode] = field(default_factory=list)

    def per_request(self) -> float:
        return aggregate_rate(self.alone, len(self.active)) / max(1, len(self.active))

    def advance(self, now: float, counters: Counters) -> bool:
        """Decode up to ``now``, finishing requests at their exact times; True if any finished."""
        finished = False
        while self.active:
            rate = self.per_request()
            nearest = min(d.tokens - d.done for d in self.active)
            first_done = self.last + nearest / rate
            if first_done > now:
                for decode in self.active:
                    decode.done += rate * max(0.0, now - self.last)
                break
            # Step in tokens, not seconds: the nearest ones finish even where the clock's
            # resolution cannot tell first_done from last.
            for decode in list(self.active):
                decode.done += nearest
                if decode.tokens - decode.done <= _EPSILON:
                    decode.done, decode.finished = decode.tokens, first_done
                    self.active.remove(decode)
                    _count(decode, decode.tokens, counters)
                    finished = True
            self.last = max(self.last, first_done)
        self.last = max(self.last, now)
        for decode in self.active:
            _count(decode, math.floor(decode.done + _EPSILON), counters)
        return finished

    def start(self, decode: Decode, now: float, alone: float, counters: Counters) -> None:
        self.advance(now, counters)
        self.alone = alone  # a reload may have changed the GPU share
        if decode.tokens <= 0:
            decode.finished = now
        else:
            self.active.append(decode)

    def stop(self, decode: Decode, now: float, counters: Counters) -> None:
        """Finish or abandon ``decode`` (a client gone mid-answer stops decoding)."""
        self.advance(now, counters)
        if decode in self.active:
            self.active.remove(decode)

    def eta(self, decode: Decode, target: float) -> float:
        """Real seconds until ``decode`` reaches ``target`` tokens, or the next request
        finishes (which changes the rate), whichever is sooner."""
        if not self.active:
            return 0.0
        rate = self.per_request()
        next_finish = min(d.tokens - d.done for d in self.active) / rate
        return max(0.0, min((target - decode.done) / rate, next_finish))


def _count(decode: Decode, total: int, counters: Counters) -> None:
    new = total - decode.counted
    if new > 0:
        decode.counted = total
        counters.tokens_generated += new
        by_model = counters.tokens_by_model
        by_model[decode.model] = by_model.get(decode.model, 0) + new


def count_tokens(model: str, tokens: int, counters: Counters) -> None:
    """Tokens decoded at once (time scale 0), counted like simulated ones."""
    _count(Decode(model, tokens, 0.0), tokens, counters)


@dataclass
class ThroughputLimit:
    """The integral of the GPU owner's max aggregate rate over simulated time (see above)."""

    time_scale: float
    owner: str | None = None
    rate: float = 0.0  # simulated tokens per simulated second
    since: float = 0.0  # monotonic: integrated up to here

    def accrue(self, now: float, counters: Counters) -> None:
        if self.owner is not None and self.time_scale > 0 and now > self.since:
            window = (now - self.since) / self.time_scale
            tokens = self.rate * window
            counters.limit_tokens += tokens
            by_model = counters.limit_tokens_by_model
            by_model[self.owner] = by_model.get(self.owner, 0.0) + tokens
            counters.limit_window_s += window
        self.since = max(self.since, now)

    def set(self, owner: str, rate: float, now: float, counters: Counters) -> None:
        """From ``now`` on, ``owner`` holds the GPU at a max rate of ``rate``."""
        self.accrue(now, counters)
        self.owner, self.rate = owner, rate


@dataclass
class PromptCache:
    """A model's per-slot prompt caches, as Ollama's runner keeps them (``InputCache``): a
    request takes the free slot with the longest common prefix, and that slot then holds the
    request's prompt. Not thread-safe: the GPU calls it under its lock."""

    slots: int
    prompts: list[str] = field(default_factory=list)
    in_use: list[bool] = field(default_factory=list)

    def take(self, prompt: str) -> tuple[int, int]:
        """(slot, characters of ``prompt`` already cached there) for a new request."""
        if not self.prompts:
            self.prompts = [""] * self.slots
            self.in_use = [False] * self.slots
        best, best_chars = -1, -1
        for i, cached in enumerate(self.prompts):
            if self.in_use[i]:
                continue
            chars = _common_prefix(cached, prompt)
            if chars > best_chars:
                best, best_chars = i, chars
        if best < 0:  # more requests than slots (cannot happen behind the slot limit)
            return -1, 0
        self.in_use[best] = True
        self.prompts[best] = prompt
        return best, best_chars

    def give_back(self, slot: int) -> None:
        if 0 <= slot < len(self.in_use):
            self.in_use[slot] = False


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo
