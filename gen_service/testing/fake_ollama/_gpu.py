"""The simulated GPU: residency, VRAM and eviction, slots and the queue, decoding (the arithmetic
is in ``_decode``), tokens and statistics.

All shared state of a fake lives in one ``Gpu`` under one lock; the HTTP handler threads call
its methods. ``Lease`` pairs a chat's slot with the resident instance it uses.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from gen_service.testing.fake_ollama._config import (
    FAULT_NAMES,
    FakeConfig,
    FakeModel,
    FaultRates,
    JudgeBehaviour,
    kv_cache_bytes,
    model_details,
)
from gen_service.testing.fake_ollama._decode import (
    SHARING_EXPONENT,
    Decode,
    Decoder,
    PromptCache,
    ThroughputLimit,
    count_tokens,
    offload_factor,
)
from gen_service.testing.fake_ollama._memory import SampleMemory
from gen_service.testing.fake_ollama._request import Abort, ChatRequest
from gen_service.testing.fake_ollama._stats import Counters, FakeStats, LoadEvent
from gen_service.testing.fake_ollama._text import iso


@dataclass
class Resident:
    """A loaded instance of a model and the runner options it was loaded with."""

    model: FakeModel
    size: int
    size_vram: int
    num_ctx: int
    num_gpu: int | None
    loaded_at: float  # monotonic
    ready_at: float  # monotonic: the simulated load ends here
    last_used: float
    expires_at: float | None  # monotonic; None: forever
    active: int = 0  # requests using this instance (holding a slot or loading it)


class Gpu:
    """Shared state of the fake: residency, slots, faults and counters, under one lock."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.models = {m.name: m for m in config.models}
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.rng = random.Random(config.seed)
        self.faults = config.faults
        self.judge = config.judge
        self.memory = SampleMemory(config.remembered_items)
        self.t0 = time.monotonic()
        self.residents: dict[str, Resident] = {}
        self.busy_slots: dict[str, int] = {}
        self.waiting = 0
        self.last_content: dict[str, str] = {}
        self.counters = Counters()
        self.decode_cond = threading.Condition(self.lock)
        self.decoders: dict[str, Decoder] = {}
        self.limit = ThroughputLimit(config.time_scale)
        self.footprints: dict[str, tuple[int, int]] = {}  # (size_vram, size) when last loaded
        self.prompt_caches: dict[str, PromptCache] = {}  # per resident model (see _decode)

    # ---- lookups

    def find(self, name: str) -> FakeModel | None:
        model = self.models.get(name)
        if model is None and ":" not in name:
            model = self.models.get(name + ":latest")
        return model

    def vram_now(self) -> int:
        return sum(r.size_vram for r in self.residents.values())

    # ---- counters (callers hold the lock unless noted)

    def count_request(self) -> None:
        with self.lock:
            self.counters.requests += 1

    def count_status(self, status: int) -> None:
        with self.lock:
            counts = self.counters.status_counts
            counts[status] = counts.get(status, 0) + 1

    def count_chat(self, now: float, request: ChatRequest) -> None:
        """Count a chat; unless it is an unload, its model now owns the GPU (see ``_decode``)."""
        with self.lock:
            self.counters.chat_requests += 1
            if request.messages and self.counters.since is None:
                self.counters.since = now
            if request.messages or request.keep_alive != 0:
                self._own(request.model, now)

    def count_fault(self, name: str) -> None:
        with self.lock:
            self.counters.faults_injected[name] += 1

    # ---- throughput (see _decode)

    def alone_rate(self, model: FakeModel) -> float:
        """Simulated tokens/s of one request alone, slowed by the model's last offload."""
        vram, size = self.footprints.get(model.name, (1, 1))
        return (model.tokens_per_s or self.config.tokens_per_s) * offload_factor(vram, size)

    def _own(self, model: FakeModel, now: float) -> None:
        rate = self.alone_rate(model) * self.config.num_parallel**SHARING_EXPONENT
        self.limit.set(model.name, rate, now, self.counters)

    def take_prompt_slot(self, model: str, prompt: str) -> tuple[int, int]:
        """(cache slot, characters of ``prompt`` cached there) for a request of ``model``."""
        with self.lock:
            cache = self.prompt_caches.setdefault(model, PromptCache(self.config.num_parallel))
            return cache.take(prompt)

    def give_back_prompt_slot(self, model: str, slot: int) -> None:
        with self.lock:
            cache = self.prompt_caches.get(model)
            if cache is not None:
                cache.give_back(slot)

    def start_decode(self, model: FakeModel, tokens: int) -> Decode | None:
        """Start decoding ``tokens`` for a request; None at time scale 0 (nothing takes time)."""
        scale = self.config.time_scale
        if scale == 0:
            return None
        with self.lock:
            now = time.monotonic()
            decoder = self.decoders.setdefault(model.name, Decoder(alone=1.0, last=now))
            decode = Decode(model.name, tokens, now)
            decoder.start(decode, now, self.alone_rate(model) / scale, self.counters)
            return decode

    def wait_decoded(self, decode: Decode, tokens: float, down: threading.Event) -> None:
        """Block until ``decode`` has produced ``tokens``; ``Abort`` if the server goes down."""
        decoder = self.decoders[decode.model]
        with self.decode_cond:
            while True:
                if decoder.advance(time.monotonic(), self.counters):
                    self.decode_cond.notify_all()  # the others speed up: wake them to re-plan
                if decode.finished is not None or decode.done >= tokens:
                    return
                if down.is_set():
                    raise Abort
                self.decode_cond.wait(decoder.eta(decode, tokens))

    def end_decode(self, decode: Decode) -> None:
        with self.decode_cond:
            self.decoders[decode.model].stop(decode, time.monotonic(), self.counters)
            self.decode_cond.notify_all()

    def _catch_up(self, now: float) -> None:
        for decoder in self.decoders.values():
            decoder.advance(now, self.counters)
        self.limit.accrue(now, self.counters)

    # ---- residency (callers hold the lock)

    def _event(
        self, kind: Literal["load", "unload", "evict"], name: str, vram: int, now: float
    ) -> None:
        self.counters.events.append(LoadEvent(round(now - self.t0, 6), kind, name, vram))

    def _drop(self, name: str, kind: Literal["unload", "evict"], now: float) -> None:
        resident = self.residents.pop(name)
        self.prompt_caches.pop(name, None)  # the runner and its KV cache are gone
        start = resident.loaded_at
        if self.counters.since is not None:
            start = max(start, self.counters.since)
            spent = self.counters.resident_s
            spent[name] = spent.get(name, 0.0) + max(0.0, now - start)
        self._event(kind, name, resident.size_vram, now)

    def _reap(self, now: float) -> None:
        for name, resident in list(self.residents.items()):
            expiry = resident.expires_at
            if resident.active == 0 and expiry is not None and now >= expiry:
                self._drop(name, "unload", now)

    def _load(self, request: ChatRequest, now: float) -> Resident:
        cfg = self.config
        model = request.model
        size = model.size_bytes + kv_cache_bytes(request.num_ctx, cfg.num_parallel)
        free = cfg.vram_bytes - self.vram_now()
        if size > free:
            idle = sorted(
                (r for r in self.residents.values() if r.active == 0),
                key=lambda r: r.last_used,
            )
            for victim in idle:
                self._drop(victim.model.name, "evict", now)
                free = cfg.vram_bytes - self.vram_now()
                if size <= free:
                    break
        size_vram = 0 if request.num_gpu == 0 else max(0, min(size, free))
        resident = Resident(
            model=model,
            size=size,
            size_vram=size_vram,
            num_ctx=request.num_ctx,
            num_gpu=request.num_gpu,
            loaded_at=now,
            ready_at=now + cfg.load_s * cfg.time_scale,
            last_used=now,
            expires_at=None if request.keep_alive is None else now + request.keep_alive,
        )
        self.residents[model.name] = resident
        self.footprints[model.name] = (size_vram, size)
        if self.limit.owner == model.name:
            self._own(model, now)  # its GPU share may have changed
        loads = self.counters.loads
        loads[model.name] = loads.get(model.name, 0) + 1
        self._event("load", model.name, size_vram, now)
        self.counters.peak_vram_bytes = max(self.counters.peak_vram_bytes, self.vram_now())
        return resident

    def claim(self, request: ChatRequest) -> tuple[Resident, bool]:
        """The resident instance for ``request`` (loading it if needed), marked in use."""
        with self.lock:
            now = time.monotonic()
            self._reap(now)
            name = request.model.name
            resident = self.residents.get(name)
            if resident is not None and (
                resident.num_ctx != request.num_ctx or resident.num_gpu != request.num_gpu
            ):
                self._drop(name, "unload", now)  # Ollama reloads on different runner options
                resident = None
            loaded = resident is None
            if resident is None:
                resident = self._load(request, now)
            resident.active += 1
            resident.last_used = now
            return resident, loaded

    def release(self, resident: Resident, keep_alive: float | None) -> None:
        with self.lock:
            now = time.monotonic()
            resident.active -= 1
            resident.last_used = now
            name = resident.model.name
            if self.residents.get(name) is not resident:
                return
            resident.expires_at = None if keep_alive is None else now + keep_alive
            self._reap(now)

    def unload(self, name: str) -> None:
        """``keep_alive: 0`` with no messages: unload now, or once in-flight requests finish."""
        with self.lock:
            now = time.monotonic()
            resident = self.residents.get(name)
            if resident is not None:
                resident.expires_at = now
            self._reap(now)

    def evict(self, name: str) -> None:
        with self.lock:
            if name in self.residents:
                self._drop(name, "evict", time.monotonic())

    def evict_all(self) -> None:
        with self.lock:
            now = time.monotonic()
            for name in list(self.residents):
                self._drop(name, "evict", now)

    # ---- slots

    def acquire_slot(self, name: str, down: threading.Event) -> bool:
        """Take a slot of model ``name``, waiting in the queue; False when the queue is full.

        Raises ``Abort`` when the server goes down while waiting.
        """
        limit = self.config.num_parallel
        with self.cond:
            if self.busy_slots.get(name, 0) < limit:
                self.busy_slots[name] = self.busy_slots.get(name, 0) + 1
                return True
            if self.waiting >= self.config.max_queue:
                return False
            self.waiting += 1
            try:
                while self.busy_slots.get(name, 0) >= limit and not down.is_set():
                    self.cond.wait()
                if down.is_set():
                    raise Abort
                self.busy_slots[name] = self.busy_slots.get(name, 0) + 1
                return True
            finally:
                self.waiting -= 1

    def release_slot(self, name: str, busy_s: float) -> None:
        with self.cond:
            self.busy_slots[name] -= 1
            if self.counters.since is not None:
                spent = self.counters.busy_s
                spent[name] = spent.get(name, 0.0) + busy_s
            self.cond.notify_all()

    def wake_all(self) -> None:
        with self.cond:
            self.cond.notify_all()
            self.decode_cond.notify_all()

    # ---- randomness

    def draw_faults(self) -> set[str]:
        with self.lock:
            rates = self.faults
            return {n for n in FAULT_NAMES if self.rng.random() < getattr(rates, n)}

    def request_rng(self) -> random.Random:
        with self.lock:
            return random.Random(self.rng.getrandbits(64))

    def previous_content(self, key: str) -> str | None:
        """The last content generated for format ``key`` (counted as a duplicate), if any."""
        with self.lock:
            previous = self.last_content.get(key)
            if previous is not None:
                self.counters.faults_injected["duplicate"] += 1
            return previous

    def remember_content(self, key: str, content: str) -> None:
        with self.lock:
            self.last_content[key] = content

    def remember_samples(self, samples: list[Any]) -> None:
        with self.lock:
            self.memory.remember(samples)

    def recall_sample(self, literals: Iterable[str]) -> dict[str, Any] | None:
        """The remembered sample item a judge request quotes, counting the judge request."""
        with self.lock:
            item = self.memory.recall(literals)
            self.counters.judge_requests += 1
            self.counters.judge_matched += item is not None
            return item

    def add_tokens(self, model: str, count: int) -> None:
        """Tokens decoded at time scale 0, where no decoder simulates them."""
        with self.lock:
            count_tokens(model, count, self.counters)

    # ---- views

    def ps(self) -> list[dict[str, Any]]:
        with self.lock:
            now = time.monotonic()
            self._reap(now)
            wall = time.time()
            out = []
            for resident in self.residents.values():
                model = resident.model
                if resident.expires_at is None:
                    expires = iso(wall + timedelta(days=365 * 290).total_seconds())
                else:
                    expires = iso(wall + max(0.0, resident.expires_at - now))
                out.append(
                    {
                        "name": model.name,
                        "model": model.name,
                        "size": resident.size,
                        "digest": model.digest,
                        "details": model_details(model),
                        "expires_at": expires,
                        "size_vram": resident.size_vram,
                        "context_length": resident.num_ctx,
                    }
                )
            return out

    def stats(self) -> FakeStats:
        with self.lock:
            now = time.monotonic()
            self._reap(now)
            self._catch_up(now)
            c = self.counters
            resident_s = dict(c.resident_s)
            if c.since is not None:
                for name, resident in self.residents.items():
                    start = max(resident.loaded_at, c.since)
                    resident_s[name] = resident_s.get(name, 0.0) + max(0.0, now - start)
            slots = self.config.num_parallel
            by_model = {
                name: min(1.0, c.busy_s.get(name, 0.0) / (slots * secs)) if secs > 0 else 0.0
                for name, secs in sorted(resident_s.items())
            }
            total_s = sum(resident_s.values())
            overall = min(1.0, sum(c.busy_s.values()) / (slots * total_s)) if total_s > 0 else 0.0
            return FakeStats(
                requests=c.requests,
                chat_requests=c.chat_requests,
                status_counts=dict(sorted(c.status_counts.items())),
                faults_injected=dict(c.faults_injected),
                loads=dict(c.loads),
                events=tuple(c.events),
                peak_vram_bytes=c.peak_vram_bytes,
                vram_bytes_now=self.vram_now(),
                resident=tuple(self.residents),
                busy_fraction=overall,
                busy_fraction_by_model=by_model,
                tokens_generated=c.tokens_generated,
                judge_requests=c.judge_requests,
                judge_matched=c.judge_matched,
                tokens_by_model=dict(sorted(c.tokens_by_model.items())),
                limit_tokens=c.limit_tokens,
                limit_tokens_by_model=dict(sorted(c.limit_tokens_by_model.items())),
                limit_window_s=c.limit_window_s,
            )

    def reset_stats(self) -> None:
        with self.lock:
            self._catch_up(time.monotonic())  # what came before belongs to the old window
            self.counters = Counters(peak_vram_bytes=self.vram_now())

    def set_faults(self, faults: FaultRates) -> None:
        with self.lock:
            self.faults = faults

    def set_judge(self, judge: JudgeBehaviour) -> None:
        with self.lock:
            self.judge = judge


class Lease:
    """A chat's slot and the resident instance it uses, given back exactly once."""

    def __init__(self, gpu: Gpu, request: ChatRequest) -> None:
        self.gpu = gpu
        self.request = request
        self.resident: Resident | None = None
        self.busy_since: float | None = None
        self.decode: Decode | None = None
        self.prompt_slot: int | None = None
        self._ended = False

    def claim(self) -> tuple[Resident, bool]:
        self.resident, loaded = self.gpu.claim(self.request)
        return self.resident, loaded

    def cached_prompt_tokens(self, prompt: str, prompt_tokens: int) -> int:
        """Of ``prompt_tokens``, how many the model's prompt cache already holds (at least one
        token is always evaluated, as in Ollama)."""
        self.prompt_slot, chars = self.gpu.take_prompt_slot(self.request.model.name, prompt)
        return max(0, min(prompt_tokens - 1, chars // 4))

    def start_decode(self, tokens: int) -> None:
        self.decode = self.gpu.start_decode(self.request.model, tokens)

    def wait_decoded(self, tokens: float, down: threading.Event) -> None:
        """Wait until ``tokens`` are decoded (at once at time scale 0)."""
        if self.decode is not None:
            self.gpu.wait_decoded(self.decode, tokens, down)

    def eval_s(self, tokens: int) -> float:
        """Simulated decode time of a finished answer of ``tokens``."""
        decode = self.decode
        if decode is None or decode.finished is None:
            return tokens / self.gpu.alone_rate(self.request.model)
        return (decode.finished - decode.started) / self.gpu.config.time_scale

    def end(self, tokens: int = 0) -> None:
        """Give everything back; ``tokens`` were decoded when no decoder counted them."""
        if self._ended:
            return
        self._ended = True
        gpu = self.gpu
        if self.decode is not None:
            gpu.end_decode(self.decode)
        else:
            gpu.add_tokens(self.request.model.name, tokens)
        if self.prompt_slot is not None:
            gpu.give_back_prompt_slot(self.request.model.name, self.prompt_slot)
        if self.resident is not None:
            gpu.release(self.resident, self.request.keep_alive)
        busy = 0.0 if self.busy_since is None else time.monotonic() - self.busy_since
        gpu.release_slot(self.request.model.name, busy)
