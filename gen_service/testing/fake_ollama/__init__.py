"""A fake Ollama: a real HTTP server on 127.0.0.1 speaking Ollama's native API, simulating a GPU.

It is a test double for the tests, the benchmarks and ``gen-service fake-ollama``. What it
generates is random text shaped by the request's JSON schema; it is never real data.

Endpoints (shapes as in Ollama's ``docs/api.md``):

- ``GET /`` ("Ollama is running"), ``GET /api/version``, ``GET /api/tags``, ``GET /api/ps``,
  ``POST /api/show``, ``POST /api/chat`` (``stream`` false, or true/omitted for NDJSON),
  ``POST /api/pull`` (NDJSON progress; an unknown model ends the stream with an error line).
- Control from other processes: ``GET /_fake/stats``, ``GET|POST /_fake/faults`` (a POST body
  is a whole ``FaultRates``), ``GET|POST /_fake/judge`` (a whole ``JudgeBehaviour``),
  ``POST /_fake/evict`` ``{"model": ...}``, ``POST /_fake/reset``.

The simulated GPU:

- **VRAM.** A resident model takes ``size_bytes + kv_cache_bytes(num_ctx, num_parallel)``, where
  the KV cache is ``num_ctx x num_parallel x 32 KiB`` (K and V, 16 KiB each per token per slot;
  Ollama sizes the cache for every parallel slot). Loading evicts idle resident models least
  recently used first; a model that still does not fit is partially offloaded (``size_vram`` = the
  free VRAM, so ``size_vram < size`` in ``/api/ps``), and ``num_gpu: 0`` keeps it all on the CPU.
  A different ``num_ctx`` or ``num_gpu`` than the resident instance was loaded with reloads it.
- **Time.** Every simulated duration (load, prompt evaluation, decoding, pull) is multiplied by
  ``time_scale`` before the server waits; 0 answers at once. Durations *reported* in responses
  are the simulated ones (unscaled). ``keep_alive`` expiry and ``stall_s`` run on the real clock.
- **Throughput** (SPEC §9.2; see ``_decode``). A model decodes one request alone at its
  ``tokens_per_s`` (``FakeModel``'s, else ``FakeConfig``'s), slowed by the share of it that does
  not fit in VRAM; ``k`` requests decoding at once share ``tokens_per_s x k^0.6``, recomputed as
  they start and finish, so ``eval_count / eval_duration`` is ``tokens_per_s`` only for a request
  alone (and always at time scale 0). ``FakeStats`` counts decoded tokens (all, per model) and
  ``limit_tokens``, the integral over the window of the max rate of the model that owns the GPU.
- **Prompt cache.** As in Ollama's runner, each slot keeps its last prompt: a request takes the
  free slot with the longest common prefix and evaluates only the rest of its prompt.
- **Slots.** Each model has ``num_parallel`` slots; up to ``max_queue`` requests (over all models)
  wait for one, and past that the answer is 503 at once.
- **Busy fraction.** Per model: slot-seconds spent generating / (``num_parallel`` x seconds the
  model was resident), since the first chat or the last ``reset_stats``. The overall figure is the
  same ratio summed over models, i.e. the per-model fractions averaged with residency time as
  weight.
- **Faults**, drawn per chat request that has messages, with one seeded RNG: see ``FaultRates``.
- **The judge.** The items of every generated ``samples`` array are remembered (a bounded LRU),
  so a judge request that quotes one gets labels that agree with it, or disagree at a set
  share, and dimensions that are low at a set share: see ``_judge`` and ``JudgeBehaviour``.

Layout (private modules, re-exported here):

- ``_config``: ``FakeConfig``, ``FakeModel``, ``FaultRates``, ``JudgeBehaviour``,
  ``default_models``, constants.
- ``_schema``: the schema faker (content from the request's JSON schema, ``invalid_items``).
- ``_text``: filler words, token counts, timestamps.
- ``_request``: the validated chat request, keep_alive parsing, HTTP errors.
- ``_gpu``: the simulated GPU (residency, VRAM, eviction, slots, queue, tokens, statistics).
- ``_decode``: decoding shared by a model's requests, and the throughput limit.
- ``_stats``: ``FakeStats``, ``LoadEvent`` and the live counters.
- ``_generate``: a chat's completion (content faults, thinking, ``num_predict``).
- ``_memory``: the generated sample items the judge remembers; ``_judge``: its verdicts.
- ``_handler``: the HTTP handler and its routes; ``_server``: ``FakeOllama``, ``serve_forever``.
"""

from __future__ import annotations

from gen_service.testing.fake_ollama._config import (
    DEFAULT_NUM_CTX,
    KV_BYTES_PER_TOKEN,
    OLLAMA_VERSION,
    FakeConfig,
    FakeModel,
    FaultRates,
    JudgeBehaviour,
    default_models,
    kv_cache_bytes,
)
from gen_service.testing.fake_ollama._request import MSG_BUSY, MSG_PULL_UNKNOWN, MSG_RUNNER_CRASH
from gen_service.testing.fake_ollama._server import FakeOllama, serve_forever
from gen_service.testing.fake_ollama._stats import FakeStats, LoadEvent

__all__ = [
    "DEFAULT_NUM_CTX",
    "KV_BYTES_PER_TOKEN",
    "MSG_BUSY",
    "MSG_PULL_UNKNOWN",
    "MSG_RUNNER_CRASH",
    "OLLAMA_VERSION",
    "FakeConfig",
    "FakeModel",
    "FakeOllama",
    "FakeStats",
    "FaultRates",
    "JudgeBehaviour",
    "LoadEvent",
    "default_models",
    "kv_cache_bytes",
    "serve_forever",
]
