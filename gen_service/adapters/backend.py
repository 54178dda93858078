"""The interface every inference backend implements (ollama, openai, llamacpp).

Backends translate their transport's failures into :mod:`gen_service.errors` at the edge and
never retry on their own: retry policy lives in :mod:`gen_service.adapters.retrying`, shared by
all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Options that decide how a model is loaded; they must be identical on every request to
    one model, or Ollama reloads it."""

    num_ctx: int = 8192
    num_gpu: int | None = None  # layers on the GPU; None lets the server decide


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: Sequence[Message]
    schema: dict[str, Any] | None  # JSON schema the output must follow (constrained decoding)
    temperature: float
    num_predict: int
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    think: bool | None = None  # None: do not send; models without "thinking" must not get it
    seed: int | None = None
    keep_alive: str | int | None = None  # e.g. "30m"; None leaves the server's default


@dataclass(frozen=True, slots=True)
class Completion:
    """One model answer with its accounting."""

    content: str
    done_reason: str  # "stop" | "length" | ...
    thinking: str = ""
    prompt_tokens: int = 0
    eval_tokens: int = 0
    total_s: float = 0.0
    load_s: float = 0.0
    prompt_eval_s: float = 0.0
    eval_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the backend says about a model it can serve."""

    name: str
    size_bytes: int  # weights on disk (Ollama) or in RAM (embedded); 0 when unknown
    parameter_size: str = ""
    quantization: str = ""
    family: str = ""
    capabilities: frozenset[str] = frozenset()  # e.g. {"completion", "thinking", "tools"}
    context_length: int | None = None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model resident on the backend now."""

    name: str
    size_bytes: int  # total memory the loaded model takes
    vram_bytes: int  # the part of it on the GPU; < size_bytes means partial CPU offload
    expires_at: str | None = None

    @property
    def gpu_share(self) -> float:
        return 1.0 if self.size_bytes <= 0 else min(1.0, self.vram_bytes / self.size_bytes)


@dataclass(frozen=True, slots=True)
class BackendHealth:
    ok: bool
    version: str = ""
    detail: str = ""


@runtime_checkable
class Backend(Protocol):
    """An inference server, or an in-process model, that writes JSON under a schema."""

    kind: str
    url: str

    async def chat(self, request: ChatRequest) -> Completion:
        """One non-streaming chat completion; raises BackendError subclasses."""
        ...

    async def health(self) -> BackendHealth:
        """Reachability and version; never raises for an unreachable server."""
        ...

    async def list_models(self) -> list[ModelInfo]:
        """Models the backend can serve (pulled / configured)."""
        ...

    async def describe(self, model: str) -> ModelInfo:
        """Details of one model; raises ModelNotFound."""
        ...

    async def loaded(self) -> list[LoadedModel]:
        """Models resident now, with their memory use."""
        ...

    async def load(self, model: str, runner: RunnerOptions, keep_alive: str | int) -> float:
        """Make a model resident; returns the seconds the load took."""
        ...

    async def unload(self, model: str) -> None:
        """Release a model's memory."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...
