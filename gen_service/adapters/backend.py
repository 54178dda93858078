"""The interface every inference backend implements (ollama, openai, llamacpp).

Backends translate their transport's failures into :mod:`gen_service.errors` at the edge and
never retry on their own: retry policy lives in :mod:`gen_service.adapters.retrying`, shared by
all of them.

What differs between backends is data, not a name to compare: each declares its
:class:`Capabilities` and words its own fixes (:meth:`Backend.fix_unreachable`,
:meth:`Backend.fix_missing_model`), and a verb only some of them have is an optional protocol
reached through a helper (:class:`Puller` through :func:`puller`). Code outside
``gen_service/adapters`` asks these, never ``backend.kind`` (which is for logs) nor
``isinstance``.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self, runtime_checkable

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
    repeat_penalty: float | None = None  # None leaves the server's default (Ollama: 1.1)


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
    # The server says it is a test double (gen-service's fake Ollama): what it generates is
    # recorded as test data and never exported as real data.
    test_double: bool = False


class ModelMemory(enum.Enum):
    """Whose memory a loaded model takes, and so what the service can check it against."""

    GPU_BUDGET = "gpu_budget"  # this machine's GPU (Ollama): the VRAM budget applies
    PROCESS_RAM = "process_ram"  # this process's RAM (embedded llama.cpp): reported, not budgeted
    SERVER = "server"  # the server's own (OpenAI-compatible): nothing to check here


class ThinkingSwitch(enum.Enum):
    """How ``ChatRequest.think`` reaches the model."""

    TOP_LEVEL = "top_level"  # a top-level ``think``, sent only to models listing "thinking"
    TEMPLATE_KWARGS = "chat_template_kwargs"  # ``enable_thinking`` for the chat template
    NONE = "none"  # not sent at all


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do and report, declared once by each backend."""

    reports_vram: bool  # loaded() tells how much of each model sits in VRAM
    memory: ModelMemory
    can_pull: bool  # implements Puller: fetches models on request
    loads_explicitly: bool  # load()/unload() change what is resident (not just check a name)
    thinking: ThinkingSwitch


@runtime_checkable
class Backend(Protocol):
    """An inference server, or an in-process model, that writes JSON under a schema."""

    kind: str  # "ollama" | "openai" | "llamacpp": for logs and messages, not for decisions
    url: str
    capabilities: Capabilities

    def canonical_name(self, model: str) -> str:
        """The name the backend lists ``model`` under (Ollama: "llama3" is "llama3:latest")."""
        ...

    def fix_unreachable(self) -> str:
        """What the user does when health() is not ok."""
        ...

    def fix_missing_model(self, model: str, role: str) -> str:
        """What the user does when ``model`` (config role ``role``) is not there."""
        ...

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


class BackendBase:
    """What the backends share by default: ``async with backend`` closes it, and a model's
    name is canonical as written."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError

    def canonical_name(self, model: str) -> str:
        return model


@runtime_checkable
class Puller(Protocol):
    """A backend that can fetch a model on request (Ollama's /api/pull)."""

    def pull(self, model: str) -> AsyncIterator[dict[str, Any]]:
        """Progress events ({"status", "digest", "total", "completed"}); the last one says
        "success". Raises BackendError subclasses."""
        ...


def puller(backend: Backend) -> Puller | None:
    """``backend`` as a :class:`Puller`, or None where it cannot pull."""
    if backend.capabilities.can_pull and isinstance(backend, Puller):
        return backend
    return None
