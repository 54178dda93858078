"""A fake Ollama: a real HTTP server on 127.0.0.1 speaking Ollama's native API, simulating a GPU.

It is a test double for the tests, the benchmarks and ``gen-service fake-ollama``. What it
generates is random text shaped by the request's JSON schema; it is never real data.

Endpoints (shapes as in Ollama's ``docs/api.md``):

- ``GET /`` ("Ollama is running"), ``GET /api/version``, ``GET /api/tags``, ``GET /api/ps``,
  ``POST /api/show``, ``POST /api/chat`` (``stream`` false, or true/omitted for NDJSON),
  ``POST /api/pull`` (NDJSON progress; an unknown model ends the stream with an error line).
- Control from other processes: ``GET /_fake/stats``, ``GET|POST /_fake/faults``,
  ``POST /_fake/evict`` ``{"model": ...}``, ``POST /_fake/reset``.

The simulated GPU:

- **VRAM.** A resident model takes ``size_bytes + kv_cache_bytes(num_ctx, num_parallel)``, where
  the KV cache is ``num_ctx x num_parallel x 32 KiB`` (K and V, 16 KiB each per token per slot;
  Ollama sizes the cache for every parallel slot). Loading evicts idle resident models least
  recently used first; a model that still does not fit is partially offloaded (``size_vram`` = the
  free VRAM, so ``size_vram < size`` in ``/api/ps``), and ``num_gpu: 0`` keeps it all on the CPU.
  A different ``num_ctx`` or ``num_gpu`` than the resident instance was loaded with reloads it.
- **Time.** Every simulated duration (load, prompt evaluation, generation, pull) is multiplied by
  ``time_scale`` before the server sleeps; 0 answers at once. Durations *reported* in responses
  are the simulated ones (unscaled), so ``eval_count / eval_duration`` is ``tokens_per_s``.
  ``keep_alive`` expiry and ``stall_s`` run on the real clock.
- **Slots.** Each model has ``num_parallel`` slots; up to ``max_queue`` requests (over all models)
  wait for one, and past that the answer is 503 at once.
- **Busy fraction.** Per model: slot-seconds spent generating / (``num_parallel`` x seconds the
  model was resident), since the first chat or the last ``reset_stats``. The overall figure is the
  same ratio summed over models, i.e. the per-model fractions averaged with residency time as
  weight.
- **Faults**, drawn per chat request that has messages, with one seeded RNG: see ``FaultRates``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import random
import re
import select
import socket
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, cast
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_NUM_CTX",
    "KV_BYTES_PER_TOKEN",
    "FakeConfig",
    "FakeModel",
    "FakeOllama",
    "FakeStats",
    "FaultRates",
    "LoadEvent",
    "default_models",
    "kv_cache_bytes",
    "serve_forever",
]

OLLAMA_VERSION = "0.11.4"
DEFAULT_NUM_CTX = 4096
"""The context Ollama gives a model when a request sets no ``num_ctx``."""
KV_BYTES_PER_TOKEN = 32 * 1024
"""KV cache per token of context per slot: K and V, 16 KiB each."""
_DEFAULT_KEEP_ALIVE_S = 300.0
_MAX_DEPTH = 8  # schema nesting past which only required properties and minItems are generated

MSG_BUSY = "server busy, please try again.  maximum pending requests exceeded"
MSG_RUNNER_CRASH = "llama runner process has terminated: exit status 2"
MSG_PULL_UNKNOWN = "pull model manifest: file does not exist"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class FakeModel:
    """A model the fake knows, as ``/api/tags`` and ``/api/show`` describe it."""

    name: str
    size_bytes: int
    parameter_size: str = "8.2B"
    quantization: str = "Q4_K_M"
    family: str = "qwen3"
    capabilities: tuple[str, ...] = ("completion",)
    context_length: int = 40960

    @property
    def digest(self) -> str:
        """A stable sha256 hex digest standing in for the model's manifest digest."""
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def thinks(self) -> bool:
        return "thinking" in self.capabilities


def default_models() -> list[FakeModel]:
    """The qwen3 family (all thinking) and SmolLM2-135M (no thinking), at Ollama's sizes."""
    thinking = ("completion", "tools", "thinking")
    return [
        FakeModel(
            "qwen3:30b-a3b", 18_556_700_000, "30.5B", family="qwen3moe", capabilities=thinking
        ),
        FakeModel("qwen3:8b", 5_225_400_000, "8.2B", capabilities=thinking),
        FakeModel("qwen3:32b", 20_201_300_000, "32.8B", capabilities=thinking),
        FakeModel("qwen3:0.6b", 522_700_000, "751.63M", capabilities=thinking),
        FakeModel(
            "smollm2:135m",
            138_000_000,
            "134.52M",
            quantization="Q8_0",
            family="llama",
            context_length=8192,
        ),
    ]


_DEFAULT_MODELS = tuple(default_models())

_FAULT_NAMES = (
    "error_500",
    "busy_503",
    "stall",
    "drop",
    "truncate",
    "fenced",
    "think_in_content",
    "invalid_items",
    "duplicate",
)


@dataclass(frozen=True)
class FaultRates:
    """Probability (0..1) of each fault per ``/api/chat`` request that has messages.

    - ``error_500``: HTTP 500 "llama runner process has terminated"; the model is evicted.
    - ``busy_503``: HTTP 503 "server busy", as when Ollama's queue is full.
    - ``stall``: hang ``stall_s`` real seconds (or until the client goes or the server stops),
      then close without answering.
    - ``drop``: close the connection without sending a byte.
    - ``truncate``: cut the content mid-JSON and answer ``done_reason: "length"``.
    - ``fenced``: wrap the content in a Markdown ```json fence.
    - ``think_in_content``: prefix the content with ``<think>...</think>``.
    - ``invalid_items``: make about half the items of each outermost array schema-invalid.
    - ``duplicate``: repeat the previous content generated for the same ``format``.
    """

    error_500: float = 0.0
    busy_503: float = 0.0
    stall: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    fenced: float = 0.0
    think_in_content: float = 0.0
    invalid_items: float = 0.0
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in _FAULT_NAMES:
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError(f"fault rate {name}={rate!r} is not a probability in [0, 1]")

    @classmethod
    def uniform(cls, rate: float) -> FaultRates:
        """Every fault at ``rate``."""
        return cls(**dict.fromkeys(_FAULT_NAMES, rate))


_NO_FAULTS = FaultRates()


@dataclass(frozen=True)
class FakeConfig:
    """The simulated machine: its models, GPU, slots, speed and faults."""

    models: tuple[FakeModel, ...] = _DEFAULT_MODELS
    vram_bytes: int = 12 * 2**30
    num_parallel: int = 4
    max_queue: int = 64
    tokens_per_s: float = 40.0
    time_scale: float = 0.0
    load_s: float = 5.0
    stall_s: float = 3600.0
    faults: FaultRates = _NO_FAULTS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_parallel < 1:
            raise ValueError("num_parallel must be at least 1")
        if self.max_queue < 0:
            raise ValueError("max_queue must not be negative")
        if self.tokens_per_s <= 0:
            raise ValueError("tokens_per_s must be positive")
        if self.time_scale < 0 or self.load_s < 0 or self.stall_s < 0:
            raise ValueError("time_scale, load_s and stall_s must not be negative")
        if self.vram_bytes < 0:
            raise ValueError("vram_bytes must not be negative")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")


_DEFAULT_CONFIG = FakeConfig()


def kv_cache_bytes(num_ctx: int, num_parallel: int) -> int:
    """Simulated KV cache of a loaded model: ``num_ctx x num_parallel x 32 KiB``."""
    return num_ctx * num_parallel * KV_BYTES_PER_TOKEN


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class LoadEvent:
    """A residency change.

    ``t`` is seconds since the fake was created (monotonic clock); ``vram_bytes`` is the VRAM the
    model took (load) or gave back (unload, evict), i.e. its ``size_vram``. "unload" is keep_alive
    expiry, ``keep_alive: 0`` or a reload for new runner options; "evict" is VRAM pressure, a
    runner crash, ``evict()`` or ``go_down()``.
    """

    t: float
    kind: Literal["load", "unload", "evict"]
    model: str
    vram_bytes: int


@dataclass(frozen=True)
class FakeStats:
    """What the fake saw since it started or since ``reset_stats``."""

    requests: int
    chat_requests: int
    status_counts: dict[int, int]
    faults_injected: dict[str, int]
    loads: dict[str, int]
    events: tuple[LoadEvent, ...]
    peak_vram_bytes: int
    vram_bytes_now: int
    resident: tuple[str, ...]
    busy_fraction: float
    busy_fraction_by_model: dict[str, float]
    tokens_generated: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (status codes become string keys)."""
        data = dataclasses.asdict(self)
        data["status_counts"] = {str(k): v for k, v in self.status_counts.items()}
        data["events"] = [dataclasses.asdict(e) for e in self.events]
        data["resident"] = list(self.resident)
        return data


# --------------------------------------------------------------------------- text and schemas

_WORD_TEXT = """
able about above account across act action active actual add address after again against age
agree air allow almost alone along already also always amount animal answer any appear apple
area argue arm around arrive art article ask attention autumn available avoid away baby back bag
balance ball bank base basket beach bear beautiful become bed before begin behind believe bell
below benefit best better between bicycle big bird birthday bit black blanket blue board boat
body book bottle bottom box branch bread break bridge bright bring brother brown build burn busy
butter button buy cake call calm camera candle capital car card care carry case castle cat catch
cause center chair chance change cheap check cheese child choice choose circle city class clean
clear climb clock close cloud coast coffee cold collect color come common compare complete
concern consider contain continue cook cool copy corner correct cost cotton count country course
cover cream create cross crowd cup curtain cut daily dance danger dark daughter day deal decide
deep degree deliver depend describe desk detail develop different dinner direct discover dish
distance doctor dog door double down draw dream dress drink drive drop dry during early earth
east easy eat edge effect egg eight either else empty end energy engine enjoy enough enter equal
evening event every exact example exchange exercise expect experience explain face fact fair
fall family famous far farm fast father feather feel field figure fill final find fine finger
finish fire first fish flat floor flower fly follow food foot forest forget fork form forward
free fresh friend front fruit full fun garden gate gather gentle gift give glass global go gold
good grain grass great green ground group grow guess guide hair half hall hand happen happy
harbor hard hat head health hear heart heavy help high hill history hold holiday home honest
hope horse hospital hot hour house huge idea important inch include increase inside iron island
job join journey judge juice jump keep kettle key kind kitchen knife know ladder lake lamp land
language large last late laugh lead learn leave left lemon letter level library light limit line
listen little live long look loud love low lunch machine main make manage map market match meal
measure meet memory metal middle milk mind minute mirror modern moment money month moon morning
mountain move music name narrow nation nature near neck need nest never new news next night
noise north note notice number ocean offer office often oil old open orange order other outside
paint paper parent park part pass path pattern pay peace pencil people pepper perfect picture
piece place plan plant plate play pocket point polite pool poor possible post pot powder power
present pretty price print problem produce public pull purple push question quick quiet rain
reach read ready reason record red remember repair report rest result rice rich ride right ring
river road rock roof room root round rule run safe salt same sand save school science sea season
seat second see seed sell send sense serve shade shape share sharp sheep shelf shell ship shirt
shoe shop short show side sign silver simple sing sister sit size skill sky sleep slow small
smile smooth snow soft soil solid song sound soup south space speak special spoon spring square
stage stair stamp star start station stay steam step stick stone store story straight street
strong student study sugar summer sun supply support sweet swim table tail take talk tall taste
teacher team tell test thank thick thin thing think thread through thumb ticket tidy time tired
today together tomorrow tool tooth top touch towel tower town toy track trade train travel tree
trip true try turn umbrella under uniform unit until upper useful valley value vegetable village
visit voice wait walk wall warm wash watch water wave way weather week weight west wheel white
whole wide wind window winter wise wish wood word work world write yard year yellow young zone
"""
_WORDS = tuple(_WORD_TEXT.split())


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(count))


def _sentences(rng: random.Random, min_words: int, max_words: int) -> str:
    """Prose of roughly ``min_words``..``max_words`` words in sentences of 5-14 words."""
    target = rng.randint(min_words, max_words)
    out: list[str] = []
    written = 0
    while written < target:
        n = min(rng.randint(5, 14), max(target - written, 3))
        sentence = _words(rng, n)
        out.append(sentence[0].upper() + sentence[1:] + ".")
        written += n
    return " ".join(out)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_or_none(value: object) -> float | None:
    return float(cast(float, value)) if _is_number(value) else None


def _json_type_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _SchemaFaker:
    """Generates a value valid against a JSON schema (the subset LLM structured output uses)."""

    def __init__(self, rng: random.Random, root: Mapping[str, Any]) -> None:
        self.rng = rng
        self.root = root

    # ---- schema plumbing

    def _lookup(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for raw in ref[1:].split("/"):
            if not raw:
                continue
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node if isinstance(node, Mapping) else {}

    def resolve(self, schema: object) -> dict[str, Any]:
        """The schema with ``$ref`` followed and ``allOf`` merged into one dict."""
        current: dict[str, Any] = dict(schema) if isinstance(schema, Mapping) else {}
        for _ in range(32):  # a cycle of bare $refs stops here
            ref = current.get("$ref")
            if not isinstance(ref, str):
                break
            rest = {k: v for k, v in current.items() if k != "$ref"}
            current = {**self._lookup(ref), **rest}
        parts = current.pop("allOf", None)
        if isinstance(parts, list):
            for part in parts:
                current = self._merge(current, self.resolve(part))
        return current

    @staticmethod
    def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for key, value in extra.items():
            if key == "properties" and isinstance(value, Mapping):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                have = list(merged.get("required", []))
                merged["required"] = have + [r for r in value if r not in have]
            else:
                merged.setdefault(key, value)
        return merged

    def _branch(self, schema: Mapping[str, Any]) -> dict[str, Any] | None:
        """One option of ``anyOf``/``oneOf``, preferring non-null ones."""
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                resolved = [self.resolve(o) for o in options]
                non_null = [o for o in resolved if o.get("type") != "null"]
                if non_null and (len(non_null) == len(resolved) or self.rng.random() < 0.85):
                    return self.rng.choice(non_null)
                return self.rng.choice(resolved)
        return None

    def _branch_for(self, schema: dict[str, Any], value: object) -> dict[str, Any]:
        """The ``anyOf``/``oneOf`` option a generated ``value`` came from (by JSON type)."""
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list):
                for option in options:
                    resolved = self.resolve(option)
                    if self._type_of(resolved) == _json_type_of(value) or (
                        self._type_of(resolved) == "number" and _is_number(value)
                    ):
                        return resolved
        return schema

    @staticmethod
    def _type_of(schema: Mapping[str, Any]) -> str:
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, list) and declared:
            non_null = [t for t in declared if t != "null"]
            return str(non_null[0] if non_null else declared[0])
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    # ---- generation

    def value(self, schema: object, depth: int = 0) -> Any:
        s = self.resolve(schema)
        if "const" in s:
            return s["const"]
        enum = s.get("enum")
        if isinstance(enum, list) and enum:
            return self.rng.choice(enum)
        branch = self._branch(s)
        if branch is not None:
            return self.value(branch, depth + 1)
        declared = s.get("type")
        if isinstance(declared, list) and declared:
            non_null = [t for t in declared if t != "null"]
            kind = self.rng.choice(non_null) if non_null else "null"
        else:
            kind = self._type_of(s)
        if kind == "object":
            return self._object(s, depth)
        if kind == "array":
            return self._array(s, depth)
        if kind == "integer":
            return self._integer(s)
        if kind == "number":
            return self._number(s)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(s)

    def _object(self, s: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props = s.get("properties")
        required = [r for r in s.get("required", []) if isinstance(r, str)]
        out: dict[str, Any] = {}
        if isinstance(props, Mapping):
            for name, sub in props.items():
                if depth > _MAX_DEPTH and name not in required:
                    continue
                out[name] = self.value(sub, depth + 1)
        for name in required:
            if name not in out:
                out[name] = _words(self.rng, self.rng.randint(2, 5))
        return out

    def _array(self, s: Mapping[str, Any], depth: int) -> list[Any]:
        min_items = s.get("minItems")
        max_items = s.get("maxItems")
        lo = int(min_items) if isinstance(min_items, int) else 1
        if depth > _MAX_DEPTH:
            lo = int(min_items) if isinstance(min_items, int) else 0
            hi = lo
        elif isinstance(max_items, int):
            hi = max(int(max_items), lo) if isinstance(min_items, int) else int(max_items)
            lo = min(lo, hi)
        else:
            hi = lo + 2 if isinstance(min_items, int) else 3
        count = self.rng.randint(lo, hi)
        out: list[Any] = []
        prefix = s.get("prefixItems")
        if isinstance(prefix, list):
            out = [self.value(p, depth + 1) for p in prefix[:count]]
        items = s.get("items", {})
        if items is False:
            return out
        seen = {json.dumps(v, sort_keys=True) for v in out}
        unique = s.get("uniqueItems") is True
        while len(out) < count:
            item = self.value(items, depth + 1)
            key = json.dumps(item, sort_keys=True)
            for _ in range(10):  # uniqueItems over a small enum may need a few draws
                if not unique or key not in seen:
                    break
                item = self.value(items, depth + 1)
                key = json.dumps(item, sort_keys=True)
            seen.add(key)
            out.append(item)
        return out

    def _string(self, s: Mapping[str, Any]) -> str:
        fmt = s.get("format")
        rng = self.rng
        if fmt == "date-time":
            text = _iso(1.7e9 + rng.random() * 1e8)
        elif fmt == "date":
            text = _iso(1.7e9 + rng.random() * 1e8)[:10]
        elif fmt == "time":
            text = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        elif fmt == "email":
            text = f"{rng.choice(_WORDS)}.{rng.choice(_WORDS)}{rng.randint(1, 999)}@example.com"
        elif fmt in ("uri", "url"):
            text = f"https://example.com/{rng.choice(_WORDS)}/{rng.choice(_WORDS)}"
        elif fmt == "uuid":
            text = "%08x-%04x-4%03x-a%03x-%012x" % (  # noqa: UP031 - fixed-width hex fields
                rng.getrandbits(32),
                rng.getrandbits(16),
                rng.getrandbits(12),
                rng.getrandbits(12),
                rng.getrandbits(48),
            )
        else:
            text = _words(rng, rng.randint(4, 14))
        min_len = s.get("minLength")
        max_len = s.get("maxLength")
        lo = int(min_len) if isinstance(min_len, int) else 0
        while len(text) < lo:
            text += " " + rng.choice(_WORDS)
        if isinstance(max_len, int) and len(text) > max_len:
            cut = text[:max_len]
            text = cut.rstrip() if len(cut.rstrip()) >= lo else cut
        return text

    @staticmethod
    def _bounds(s: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
        """(low, low exclusive, high, high exclusive) from draft-4 or draft-6+ keywords."""
        low, high = _number_or_none(s.get("minimum")), _number_or_none(s.get("maximum"))
        raw_ex_min, raw_ex_max = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
        low_ex = low is not None and raw_ex_min is True  # draft 4: a boolean beside minimum
        high_ex = high is not None and raw_ex_max is True
        ex_min, ex_max = _number_or_none(raw_ex_min), _number_or_none(raw_ex_max)
        if ex_min is not None and (low is None or ex_min >= low):
            low, low_ex = ex_min, True
        if ex_max is not None and (high is None or ex_max <= high):
            high, high_ex = ex_max, True
        return low, low_ex, high, high_ex

    def _integer(self, s: Mapping[str, Any]) -> int:
        low, low_ex, high, high_ex = self._bounds(s)
        lo = None if low is None else (math.floor(low) + 1 if low_ex else math.ceil(low))
        hi = None if high is None else (math.ceil(high) - 1 if high_ex else math.floor(high))
        if lo is None and hi is None:
            lo, hi = 0, 100
        elif lo is None:
            assert hi is not None
            lo = hi - 100
        elif hi is None:
            hi = lo + 100
        hi = max(hi, lo)
        step = s.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first <= last:
                return self.rng.randint(first, last) * step
        return self.rng.randint(lo, hi)

    def _number(self, s: Mapping[str, Any]) -> float:
        low, low_ex, high, high_ex = self._bounds(s)
        lo = None if low is None else low + (0.01 if low_ex else 0.0)
        hi = None if high is None else high - (0.01 if high_ex else 0.0)
        if lo is None and hi is None:
            lo, hi = 0.0, 100.0
        elif lo is None:
            assert hi is not None
            lo = hi - 100.0
        elif hi is None:
            hi = lo + 100.0
        hi = max(hi, lo)
        value = round(self.rng.uniform(lo, hi), 2)
        if value < lo:
            value = math.ceil(round(lo * 100, 6)) / 100
        if value > hi:
            value = math.floor(round(hi * 100, 6)) / 100
        return value

    # ---- the invalid_items fault

    def spoil_arrays(self, schema: object, value: object) -> int:
        """Make about half the items of each outermost array invalid; returns how many."""
        s = self._branch_for(self.resolve(schema), value)
        if isinstance(value, list):
            items = s.get("items")
            if not isinstance(items, Mapping) or not value:
                return 0
            count = max(1, round(len(value) / 2))
            for i in self.rng.sample(range(len(value)), count):
                value[i] = self._spoil(items, value[i])
            return count
        if isinstance(value, dict):
            props = s.get("properties")
            if not isinstance(props, Mapping):
                return 0
            return sum(self.spoil_arrays(props[k], value[k]) for k in props if k in value)
        return 0

    def _out_of_range(self, s: Mapping[str, Any], value: float) -> float | None:
        low, _, high, _ = self._bounds(s)
        bad: float
        if high is not None:
            bad = high + 1000
        elif low is not None:
            bad = low - 1000
        else:
            return None
        return int(bad) if isinstance(value, int) else bad

    def _spoil(self, schema: object, item: object) -> Any:
        s = self._branch_for(self.resolve(schema), item)
        if isinstance(item, dict):
            required = [r for r in s.get("required", []) if r in item]
            props = s.get("properties") if isinstance(s.get("properties"), Mapping) else {}
            ranged: list[tuple[str, float]] = []
            for name, sub in cast(Mapping[str, Any], props).items():
                if name in item and _is_number(item[name]):
                    bad = self._out_of_range(self.resolve(sub), item[name])
                    if bad is not None:
                        ranged.append((name, bad))
            if required and (not ranged or self.rng.random() < 0.5):
                del item[self.rng.choice(required)]
                return item
            if ranged:
                name, bad = self.rng.choice(ranged)
                item[name] = bad
                return item
            return _words(self.rng, 3)  # an object schema never accepts a string
        if _is_number(item):
            bad = self._out_of_range(s, cast(float, item))
            return bad if bad is not None else _words(self.rng, 3)
        if isinstance(item, str):
            return self.rng.randint(1000, 9999)
        return _words(self.rng, 3)


# --------------------------------------------------------------------------- helpers


def _iso(ts: float) -> str:
    """RFC 3339 in UTC with microseconds, as Ollama writes ``created_at``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _parse_keep_alive(value: object) -> float | None:
    """Seconds a model stays resident after a request; ``None`` is forever.

    Numbers are seconds; strings are Go durations ("5m", "1h30m") or numbers; negative is forever.
    """
    if value is None:
        return _DEFAULT_KEEP_ALIVE_S
    if isinstance(value, bool):
        raise ValueError(f"invalid keep_alive {value!r}")
    if isinstance(value, int | float):
        return None if value < 0 else float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid keep_alive {value!r}")
    text = value.strip()
    if not text:
        return _DEFAULT_KEEP_ALIVE_S
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return None if number < 0 else number
    negative = text.startswith("-")
    body = text.lstrip("+-")
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNIT_S[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        raise ValueError(f'time: invalid duration "{value}"')
    return None if negative else total


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _parameter_count(size: str) -> int:
    match = re.fullmatch(r"([\d.]+)\s*([KMBT]?)", size.strip(), re.IGNORECASE)
    if not match:
        return 0
    scale = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}[match.group(2).upper()]
    return round(float(match.group(1)) * scale)


def _details(model: FakeModel) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": model.family,
        "families": [model.family],
        "parameter_size": model.parameter_size,
        "quantization_level": model.quantization,
    }


class _HttpError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Abort(Exception):
    """End the exchange by closing the connection without (further) bytes."""


# --------------------------------------------------------------------------- the simulated GPU


@dataclass
class _Resident:
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


@dataclass
class _Counters:
    requests: int = 0
    chat_requests: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    faults_injected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_FAULT_NAMES, 0))
    loads: dict[str, int] = field(default_factory=dict)
    events: list[LoadEvent] = field(default_factory=list)
    peak_vram_bytes: int = 0
    tokens_generated: int = 0
    busy_s: dict[str, float] = field(default_factory=dict)
    resident_s: dict[str, float] = field(default_factory=dict)  # closed residency intervals
    since: float | None = None  # monotonic time of the first chat since the last reset


@dataclass(frozen=True)
class _Request:
    """A validated ``/api/chat`` request."""

    model: FakeModel
    name: str  # as the client wrote it; echoed back like Ollama does
    messages: list[Any]
    fmt: object
    think: bool
    stream: bool
    keep_alive: float | None
    num_ctx: int
    num_gpu: int | None
    num_predict: int | None


@dataclass(frozen=True)
class _Completion:
    content: str
    thinking: str
    done_reason: str
    prompt_tokens: int
    eval_tokens: int


class _Gpu:
    """Shared state of the fake: residency, slots, faults and counters, under one lock."""

    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.models = {m.name: m for m in config.models}
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.rng = random.Random(config.seed)
        self.faults = config.faults
        self.t0 = time.monotonic()
        self.residents: dict[str, _Resident] = {}
        self.busy_slots: dict[str, int] = {}
        self.waiting = 0
        self.last_content: dict[str, str] = {}
        self.counters = _Counters()

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

    def count_chat(self, now: float, with_messages: bool) -> None:
        with self.lock:
            self.counters.chat_requests += 1
            if with_messages and self.counters.since is None:
                self.counters.since = now

    def count_fault(self, name: str) -> None:
        with self.lock:
            self.counters.faults_injected[name] += 1

    # ---- residency (callers hold the lock)

    def _event(
        self, kind: Literal["load", "unload", "evict"], name: str, vram: int, now: float
    ) -> None:
        self.counters.events.append(LoadEvent(round(now - self.t0, 6), kind, name, vram))

    def _drop(self, name: str, kind: Literal["unload", "evict"], now: float) -> None:
        resident = self.residents.pop(name)
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

    def _load(self, request: _Request, now: float) -> _Resident:
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
        resident = _Resident(
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
        loads = self.counters.loads
        loads[model.name] = loads.get(model.name, 0) + 1
        self._event("load", model.name, size_vram, now)
        self.counters.peak_vram_bytes = max(self.counters.peak_vram_bytes, self.vram_now())
        return resident

    def claim(self, request: _Request) -> tuple[_Resident, bool]:
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

    def release(self, resident: _Resident, keep_alive: float | None) -> None:
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

        Raises ``_Abort`` when the server goes down while waiting.
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
                    raise _Abort
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

    # ---- randomness

    def draw_faults(self) -> set[str]:
        with self.lock:
            rates = self.faults
            return {n for n in _FAULT_NAMES if self.rng.random() < getattr(rates, n)}

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

    def add_tokens(self, count: int) -> None:
        with self.lock:
            self.counters.tokens_generated += count

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
                    expires = _iso(wall + timedelta(days=365 * 290).total_seconds())
                else:
                    expires = _iso(wall + max(0.0, resident.expires_at - now))
                out.append(
                    {
                        "name": model.name,
                        "model": model.name,
                        "size": resident.size,
                        "digest": model.digest,
                        "details": _details(model),
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
            )

    def reset_stats(self) -> None:
        with self.lock:
            self.counters = _Counters(peak_vram_bytes=self.vram_now())

    def set_faults(self, faults: FaultRates) -> None:
        with self.lock:
            self.faults = faults


class _Lease:
    """A chat's slot and the resident instance it uses, given back exactly once."""

    def __init__(self, gpu: _Gpu, request: _Request) -> None:
        self.gpu = gpu
        self.request = request
        self.resident: _Resident | None = None
        self.busy_since: float | None = None
        self._ended = False

    def claim(self) -> tuple[_Resident, bool]:
        self.resident, loaded = self.gpu.claim(self.request)
        return self.resident, loaded

    def end(self, tokens: int = 0) -> None:
        if self._ended:
            return
        self._ended = True
        gpu = self.gpu
        gpu.add_tokens(tokens)
        if self.resident is not None:
            gpu.release(self.resident, self.request.keep_alive)
        busy = 0.0 if self.busy_since is None else time.monotonic() - self.busy_since
        gpu.release_slot(self.request.model.name, busy)


# --------------------------------------------------------------------------- generation


def _generate(gpu: _Gpu, request: _Request, faults: set[str], rng: random.Random) -> _Completion:
    """The completion for ``request``, with the content faults in ``faults`` applied."""
    fmt = request.fmt
    key = json.dumps(fmt, sort_keys=True)
    previous = gpu.previous_content(key) if "duplicate" in faults else None
    if previous is not None:
        content = previous
    else:
        if isinstance(fmt, Mapping):
            faker = _SchemaFaker(rng, fmt)
            value = faker.value(fmt)
            if "invalid_items" in faults and faker.spoil_arrays(fmt, value) > 0:
                gpu.count_fault("invalid_items")
            content = json.dumps(value, ensure_ascii=False)
        elif fmt == "json":
            answer = {
                "answer": _sentences(rng, 8, 20),
                "confidence": round(rng.random(), 2),
                "tags": [rng.choice(_WORDS) for _ in range(rng.randint(1, 3))],
            }
            content = json.dumps(answer, ensure_ascii=False)
        else:
            content = _sentences(rng, 30, 90)
        gpu.remember_content(key, content)

    if "think_in_content" in faults:
        gpu.count_fault("think_in_content")
        content = f"<think>{_sentences(rng, 10, 30)}</think>\n{content}"
    if "fenced" in faults:
        gpu.count_fault("fenced")
        content = f"```json\n{content}\n```"
    done_reason = "stop"
    if "truncate" in faults and len(content) > 1:
        gpu.count_fault("truncate")
        content = content[: rng.randint(max(1, len(content) // 4), max(1, len(content) * 3 // 4))]
        done_reason = "length"

    thinking = _sentences(rng, 40, 120) if request.think else ""
    budget = request.num_predict
    if budget is not None and _tokens(thinking) + _tokens(content) > budget:
        if _tokens(thinking) >= budget:
            thinking, content = thinking[: budget * 4], ""
        else:
            content = content[: (budget - _tokens(thinking)) * 4]
        done_reason = "length"

    prompt_tokens = sum(
        4 + _tokens(str(m.get("content", ""))) for m in request.messages if isinstance(m, Mapping)
    )
    return _Completion(
        content=content,
        thinking=thinking,
        done_reason=done_reason,
        prompt_tokens=prompt_tokens,
        eval_tokens=_tokens(thinking) + _tokens(content),
    )


_PIECE = re.compile(r"\S+\s*|\s+")


# --------------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    """One listening socket of the fake; ``go_down`` closes it and ``come_up`` makes another."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gpu: _Gpu) -> None:
        self.gpu = gpu
        self.down = threading.Event()
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # Like ThreadingMixIn, but the connections and threads are tracked so that going down
        # can close idle keep-alive connections and join every handler.
        conn = cast(socket.socket, request)
        worker = threading.Thread(
            target=self._serve_connection, args=(conn, client_address), daemon=True
        )
        with self._conn_lock:
            self._conns.add(conn)
            self._workers.add(worker)
        worker.start()

    def _serve_connection(self, conn: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(conn, client_address)
        except Exception:  # a client that vanished mid-exchange is not an error here
            pass
        finally:
            self.shutdown_request(conn)
            with self._conn_lock:
                self._conns.discard(conn)
                self._workers.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def join_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._conn_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Ollama"
    sys_version = ""

    @property
    def _srv(self) -> _Server:
        return cast(_Server, self.server)

    @property
    def _gpu(self) -> _Gpu:
        return self._srv.gpu

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every response (Go's net/http sets it too).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str, *, count: bool = True) -> None:
        if count:
            self._gpu.count_status(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._responded = True

    def _send_json(self, status: int, payload: object, *, count: bool = True) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self._send(status, body, "application/json; charset=utf-8", count=count)

    def _begin_stream(self) -> None:
        self._gpu.count_status(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._responded = True

    def _stream_line(self, payload: object) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _sleep(self, seconds: float) -> None:
        """Sleep, or abort at once if the server goes down."""
        if seconds > 0 and self._srv.down.wait(seconds):
            raise _Abort

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _dispatch(self, method: str) -> None:
        self._responded = False
        control = False
        try:
            raw = self._read_body()
            path = urlsplit(self.path).path.rstrip("/") or "/"
            control = path.startswith("/_fake/")
            if not control:
                self._gpu.count_request()
            routes = _CONTROL_ROUTES if control else _ROUTES
            handlers = routes.get(path)
            if handlers is None:
                self._send(404, b"404 page not found", "text/plain", count=not control)
                return
            handler = handlers.get("GET" if method == "HEAD" else method)
            if handler is None:
                self._send(405, b"405 method not allowed", "text/plain", count=not control)
                return
            handler(self, raw)
        except _HttpError as exc:
            if self._responded:
                self.close_connection = True
            else:
                self._send_json(exc.status, {"error": exc.message}, count=not control)
        except _Abort:
            self.close_connection = True
        except OSError:
            self.close_connection = True
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            if self._responded:
                self.close_connection = True
            else:
                self._send_json(500, {"error": f"fake ollama: {exc!r}"}, count=not control)

    def _json_body(self, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            raise _HttpError(400, "EOF")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _HttpError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise _HttpError(400, "invalid request body: expected a JSON object")
        return body

    def _model_named(self, body: Mapping[str, Any]) -> tuple[str, FakeModel | None]:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            raise _HttpError(400, "model is required")
        return name, self._gpu.find(name)

    # ---- informational endpoints

    def _root(self, raw: bytes) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self, raw: bytes) -> None:
        self._send_json(200, {"version": OLLAMA_VERSION})

    def _tags(self, raw: bytes) -> None:
        modified = _iso(time.time() - 86400)
        models = [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": modified,
                "size": m.size_bytes,
                "digest": m.digest,
                "details": _details(m),
            }
            for m in self._gpu.models.values()
        ]
        self._send_json(200, {"models": models})

    def _ps(self, raw: bytes) -> None:
        self._send_json(200, {"models": self._gpu.ps()})

    def _show(self, raw: bytes) -> None:
        name, model = self._model_named(self._json_body(raw))
        if model is None:
            raise _HttpError(404, f"model '{name}' not found")
        family = model.family
        self._send_json(
            200,
            {
                "license": "",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n',
                "parameters": 'stop "<|im_end|>"\ntemperature 0.6',
                "template": "{{ .Prompt }}",
                "details": _details(model),
                "model_info": {
                    "general.architecture": family,
                    "general.parameter_count": _parameter_count(model.parameter_size),
                    "general.file_type": 15,
                    f"{family}.context_length": model.context_length,
                },
                "capabilities": list(model.capabilities),
                "modified_at": _iso(time.time() - 86400),
            },
        )

    # ---- pull

    def _pull(self, raw: bytes) -> None:
        body = self._json_body(raw)
        _, model = self._model_named(body)
        stream = body.get("stream") is not False
        if not stream:
            if model is None:
                raise _HttpError(500, MSG_PULL_UNKNOWN)
            self._sleep(model.size_bytes / 200e6 * self._gpu.config.time_scale)
            self._send_json(200, {"status": "success"})
            return
        self._begin_stream()
        self._stream_line({"status": "pulling manifest"})
        if model is None:
            self._stream_line({"error": MSG_PULL_UNKNOWN})
            self._end_stream()
            return
        layers = [
            ("sha256:" + model.digest, model.size_bytes),
            ("sha256:" + hashlib.sha256(model.digest.encode()).hexdigest(), 1_492),
        ]
        for digest, total in layers:
            for step in range(5):
                self._sleep(total / 4 / 200e6 * self._gpu.config.time_scale if step else 0)
                self._stream_line(
                    {
                        "status": f"downloading {digest}",
                        "digest": digest,
                        "total": total,
                        "completed": total * step // 4,
                    }
                )
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            self._stream_line({"status": status})
        self._end_stream()

    # ---- chat

    def _parse_chat(self, body: Mapping[str, Any]) -> _Request:
        name, model = self._model_named(body)
        if model is None:
            raise _HttpError(404, f'model "{name}" not found, try pulling it first')
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            raise _HttpError(400, "messages must be a list")
        fmt = body.get("format")
        if fmt == "":
            fmt = None
        if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
            raise _HttpError(400, 'invalid format: expected "json" or a JSON schema')
        think_value = body.get("think")
        if think_value is not None and not model.thinks:
            raise _HttpError(400, f'"{name}" does not support thinking')
        think = think_value is True or think_value in ("high", "medium", "low")
        try:
            keep_alive = _parse_keep_alive(body.get("keep_alive"))
        except ValueError as exc:
            raise _HttpError(400, str(exc)) from None
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise _HttpError(400, "options must be an object")

        def int_option(key: str) -> int | None:
            value = options.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _HttpError(400, f'option "{key}" must be of type integer')
            return int(value)

        num_ctx = int_option("num_ctx") or DEFAULT_NUM_CTX
        num_predict = int_option("num_predict")
        if num_predict is not None and num_predict < 0:
            num_predict = None  # -1: no limit; -2: fill the context
        return _Request(
            model=model,
            name=name,
            messages=messages,
            fmt=fmt,
            think=think and model.thinks,
            stream=body.get("stream") is not False,
            keep_alive=keep_alive,
            num_ctx=max(1, num_ctx),
            num_gpu=int_option("num_gpu"),
            num_predict=num_predict,
        )

    def _chat(self, raw: bytes) -> None:
        request = self._parse_chat(self._json_body(raw))
        gpu = self._gpu
        gpu.count_chat(time.monotonic(), bool(request.messages))
        if not request.messages:
            self._load_or_unload(request)
            return

        faults = gpu.draw_faults()
        if "drop" in faults:
            gpu.count_fault("drop")
            raise _Abort
        if "busy_503" in faults:
            gpu.count_fault("busy_503")
            raise _HttpError(503, MSG_BUSY)
        if not gpu.acquire_slot(request.model.name, self._srv.down):
            raise _HttpError(503, MSG_BUSY)
        lease = _Lease(gpu, request)
        try:
            resident, loaded = lease.claim()
            self._sleep(resident.ready_at - time.monotonic())
            lease.busy_since = time.monotonic()
            if "error_500" in faults:
                gpu.count_fault("error_500")
                gpu.evict(request.model.name)
                raise _HttpError(500, MSG_RUNNER_CRASH)
            if "stall" in faults:
                gpu.count_fault("stall")
                self._stall()
            completion = _generate(gpu, request, faults, gpu.request_rng())
            self._answer(request, completion, gpu.config.load_s if loaded else 0.0, lease)
        finally:
            lease.end()

    def _stall(self) -> None:
        deadline = time.monotonic() + self._gpu.config.stall_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._srv.down.wait(min(0.05, remaining)) or self._client_gone():
                raise _Abort

    def _load_or_unload(self, request: _Request) -> None:
        gpu = self._gpu
        if request.keep_alive == 0:
            gpu.unload(request.model.name)
            reason = "unload"
        else:
            resident, _ = gpu.claim(request)
            try:
                self._sleep(resident.ready_at - time.monotonic())
            finally:
                gpu.release(resident, request.keep_alive)
            reason = "load"
        self._send_json(
            200,
            {
                "model": request.name,
                "created_at": _iso(time.time()),
                "message": {"role": "assistant", "content": ""},
                "done_reason": reason,
                "done": True,
            },
        )

    def _answer(
        self, request: _Request, completion: _Completion, load_s: float, lease: _Lease
    ) -> None:
        """Send the completion; the lease ends just before the final bytes, so a client that
        reads the answer sees the slot free, the tokens counted and keep_alive 0 applied."""
        cfg = self._gpu.config
        prompt_s = completion.prompt_tokens / (cfg.tokens_per_s * 20)
        eval_s = completion.eval_tokens / cfg.tokens_per_s
        final = {
            "model": request.name,
            "created_at": "",
            "message": {"role": "assistant", "content": ""},
            "done_reason": completion.done_reason,
            "done": True,
            "total_duration": int((load_s + prompt_s + eval_s) * 1e9) + 250_000,
            "load_duration": int(load_s * 1e9) + 50_000,
            "prompt_eval_count": completion.prompt_tokens,
            "prompt_eval_duration": int(prompt_s * 1e9),
            "eval_count": completion.eval_tokens,
            "eval_duration": int(eval_s * 1e9),
        }
        self._sleep(prompt_s * cfg.time_scale)
        if not request.stream:
            self._sleep(eval_s * cfg.time_scale)
            message: dict[str, str] = {"role": "assistant", "content": completion.content}
            if completion.thinking:
                message["thinking"] = completion.thinking
            final["message"] = message
            final["created_at"] = _iso(time.time())
            lease.end(completion.eval_tokens)
            self._send_json(200, final)
            return

        pieces = [("thinking", p) for p in _PIECE.findall(completion.thinking)]
        pieces += [("content", p) for p in _PIECE.findall(completion.content)]
        start = time.monotonic()
        step = eval_s * cfg.time_scale / max(1, len(pieces))
        self._begin_stream()
        for i, (kind, piece) in enumerate(pieces):
            self._sleep(start + (i + 1) * step - time.monotonic())
            message = {"role": "assistant", "content": piece if kind == "content" else ""}
            if kind == "thinking":
                message["thinking"] = piece
            self._stream_line(
                {
                    "model": request.name,
                    "created_at": _iso(time.time()),
                    "message": message,
                    "done": False,
                }
            )
        final["created_at"] = _iso(time.time())
        lease.end(completion.eval_tokens)
        self._stream_line(final)
        self._end_stream()

    # ---- control endpoints

    def _fake_stats(self, raw: bytes) -> None:
        self._send_json(200, self._gpu.stats().to_json(), count=False)

    def _fake_faults_get(self, raw: bytes) -> None:
        self._send_json(200, dataclasses.asdict(self._gpu.faults), count=False)

    def _fake_faults_set(self, raw: bytes) -> None:
        body = self._json_body(raw)
        unknown = set(body) - set(_FAULT_NAMES)
        if unknown:
            raise _HttpError(400, f"unknown fault(s): {', '.join(sorted(unknown))}")
        try:
            faults = FaultRates(**body)
        except (TypeError, ValueError) as exc:
            raise _HttpError(400, str(exc)) from None
        self._gpu.set_faults(faults)
        self._send_json(200, dataclasses.asdict(faults), count=False)

    def _fake_evict(self, raw: bytes) -> None:
        name, model = self._model_named(self._json_body(raw))
        self._gpu.evict(model.name if model else name)
        self._send_json(200, {"evicted": model.name if model else name}, count=False)

    def _fake_reset(self, raw: bytes) -> None:
        self._gpu.reset_stats()
        self._send_json(200, {"reset": True}, count=False)


_Route = dict[str, Any]
_ROUTES: dict[str, _Route] = {
    "/": {"GET": _Handler._root},
    "/api/version": {"GET": _Handler._version},
    "/api/tags": {"GET": _Handler._tags},
    "/api/ps": {"GET": _Handler._ps},
    "/api/show": {"POST": _Handler._show},
    "/api/chat": {"POST": _Handler._chat},
    "/api/pull": {"POST": _Handler._pull},
}
_CONTROL_ROUTES: dict[str, _Route] = {
    "/_fake/stats": {"GET": _Handler._fake_stats},
    "/_fake/faults": {"GET": _Handler._fake_faults_get, "POST": _Handler._fake_faults_set},
    "/_fake/evict": {"POST": _Handler._fake_evict},
    "/_fake/reset": {"POST": _Handler._fake_reset},
}


# --------------------------------------------------------------------------- the public object


class FakeOllama:
    """The fake Ollama server; ``with FakeOllama(cfg) as fake:`` serves on ``fake.url``."""

    def __init__(
        self, config: FakeConfig = _DEFAULT_CONFIG, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config
        self._host = host
        self._port = port
        self._bound_port: int | None = None
        self._gpu = _Gpu(config)
        self._life = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._bound_port is None:
            raise RuntimeError("the fake Ollama has not been started")
        return f"http://{self._host}:{self._bound_port}"

    def start(self) -> str:
        """Bind, serve in a daemon thread and return the base URL."""
        with self._life:
            if self._server is None:
                self._listen(self._bound_port if self._bound_port is not None else self._port)
            return self.url

    def stop(self) -> None:
        """Stop serving; unblocks stalled and queued handlers. Idempotent."""
        with self._life:
            self._close()

    def go_down(self) -> None:
        """Stop listening (new connections are refused) and drop every connection and model."""
        with self._life:
            if self._server is not None:
                self._close()
                self._gpu.evict_all()  # the process is gone, and its runners with it

    def come_up(self) -> None:
        """Listen again on the same port."""
        with self._life:
            if self._bound_port is None:
                raise RuntimeError("come_up() before start()")
            if self._server is None:
                self._listen(self._bound_port)

    def __enter__(self) -> FakeOllama:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stats(self) -> FakeStats:
        return self._gpu.stats()

    def set_faults(self, faults: FaultRates) -> None:
        self._gpu.set_faults(faults)

    def evict(self, model: str) -> None:
        """Simulate a runner crash or eviction: ``model`` is no longer resident."""
        found = self._gpu.find(model)
        self._gpu.evict(found.name if found else model)

    def reset_stats(self) -> None:
        self._gpu.reset_stats()

    # ---- lifecycle (callers hold self._life)

    def _listen(self, port: int) -> None:
        server = _Server((self._host, port), self._gpu)
        self._bound_port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-ollama:{self._bound_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread

    def _close(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.down.set()
        self._gpu.wake_all()
        server.shutdown()
        thread.join()
        server.server_close()
        server.close_connections()
        server.join_workers(timeout=5.0)


def serve_forever(config: FakeConfig, host: str = "127.0.0.1", port: int = 11434) -> None:
    """Serve until KeyboardInterrupt; print the URL, and a stats line on exit."""
    fake = FakeOllama(config, host, port)
    url = fake.start()
    print(
        f"fake Ollama listening on {url} (a test double: its output is not real data)", flush=True
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
        s = fake.stats()
        faults = ",".join(f"{k}={v}" for k, v in s.faults_injected.items() if v) or "none"
        print(
            f"requests={s.requests} chat={s.chat_requests} loads={sum(s.loads.values())}"
            f" peak_vram={s.peak_vram_bytes / 2**30:.2f}GiB busy={s.busy_fraction:.2f}"
            f" tokens={s.tokens_generated} faults={faults}",
            flush=True,
        )
