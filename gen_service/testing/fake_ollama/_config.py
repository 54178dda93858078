"""What the fake simulates: its models, the machine (VRAM, slots, speed) and the fault rates.

``FakeConfig`` is the whole simulated machine, frozen; ``FakeModel`` one model as ``/api/tags``
and ``/api/show`` describe it; ``FaultRates`` the probability of each injected fault.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

OLLAMA_VERSION = "0.11.4"
DEFAULT_NUM_CTX = 4096
"""The context Ollama gives a model when a request sets no ``num_ctx``."""
KV_BYTES_PER_TOKEN = 32 * 1024
"""KV cache per token of context per slot: K and V, 16 KiB each."""


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
    tokens_per_s: float | None = None
    """Decode rate of one request alone, all on the GPU; None: ``FakeConfig.tokens_per_s``."""

    def __post_init__(self) -> None:
        if self.tokens_per_s is not None and self.tokens_per_s <= 0:
            raise ValueError(f"{self.name}: tokens_per_s must be positive")

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

FAULT_NAMES = (
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
        for name in FAULT_NAMES:
            rate = getattr(self, name)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError(f"fault rate {name}={rate!r} is not a probability in [0, 1]")

    @classmethod
    def uniform(cls, rate: float) -> FaultRates:
        """Every fault at ``rate``."""
        return cls(**dict.fromkeys(FAULT_NAMES, rate))


_NO_FAULTS = FaultRates()

JUDGE_FIELDS = ("low_quality_share", "label_disagreement_share")


@dataclass(frozen=True)
class JudgeBehaviour:
    """How the fake answers judge requests (see ``_judge``); each share is a probability per
    judge request.

    - ``low_quality_share``: all four dimensions are drawn from [0.30, 0.65] instead of
      [0.75, 0.98].
    - ``label_disagreement_share``: the blind labels disagree with the judged sample's own.
    """

    low_quality_share: float = 0.0
    label_disagreement_share: float = 0.0

    def __post_init__(self) -> None:
        for name in JUDGE_FIELDS:
            share = getattr(self, name)
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
                raise ValueError(f"judge {name}={share!r} is not a probability in [0, 1]")


_AGREEING_JUDGE = JudgeBehaviour()


@dataclass(frozen=True)
class FakeConfig:
    """The simulated machine: its models, GPU, slots, speed, faults and judge."""

    models: tuple[FakeModel, ...] = _DEFAULT_MODELS
    vram_bytes: int = 12 * 2**30
    num_parallel: int = 4
    max_queue: int = 64
    tokens_per_s: float = 40.0
    """Decode rate of one request alone, for models without their own ``tokens_per_s``."""
    time_scale: float = 0.0
    load_s: float = 5.0
    stall_s: float = 3600.0
    faults: FaultRates = _NO_FAULTS
    seed: int = 0
    judge: JudgeBehaviour = _AGREEING_JUDGE
    remembered_items: int = 50_000
    """How many generated sample items the judge remembers, least recently used going first
    (about 2 KB each for this project's data types: some 100 MB at the default)."""

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
        if self.remembered_items < 0:
            raise ValueError("remembered_items must not be negative")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")


DEFAULT_CONFIG = FakeConfig()


def kv_cache_bytes(num_ctx: int, num_parallel: int) -> int:
    """Simulated KV cache of a loaded model: ``num_ctx x num_parallel x 32 KiB``."""
    return num_ctx * num_parallel * KV_BYTES_PER_TOKEN


def parameter_count(size: str) -> int:
    match = re.fullmatch(r"([\d.]+)\s*([KMBT]?)", size.strip(), re.IGNORECASE)
    if not match:
        return 0
    scale = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}[match.group(2).upper()]
    return round(float(match.group(1)) * scale)


def model_details(model: FakeModel) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": model.family,
        "families": [model.family],
        "parameter_size": model.parameter_size,
        "quantization_level": model.quantization,
    }
