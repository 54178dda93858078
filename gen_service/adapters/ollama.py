"""Ollama's native API over httpx (SPEC §3).

Rules that matter on a real GPU: ``think`` goes at the top level and only to models that list
the ``thinking`` capability; every request to one model carries the same runner options
(``num_ctx``, ``num_gpu``) or Ollama reloads it; ``num_predict`` is always set; load is a chat
with empty ``messages`` and unload the same with ``keep_alive: 0``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from gen_service.adapters.backend import (
    BackendHealth,
    ChatRequest,
    Completion,
    LoadedModel,
    ModelInfo,
    RunnerOptions,
)
from gen_service.errors import (
    BackendDown,
    BackendError,
    BackendRejected,
    BackendUnavailable,
    ModelNotFound,
    TruncatedOutput,
)

_NS = 1e-9


class OllamaBackend:
    kind = "ollama"

    def __init__(
        self,
        url: str = "http://127.0.0.1:11434",
        *,
        request_timeout_s: float = 900.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(request_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )
        self._capabilities: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        return f"OllamaBackend(url={self.url!r})"

    # -- generation --------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> Completion:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": False,
            "options": {
                **_runner_options(request.runner),
                "temperature": request.temperature,
                "num_predict": request.num_predict,
            },
        }
        if request.schema is not None:
            body["format"] = request.schema
        if request.seed is not None:
            body["options"]["seed"] = request.seed
        if request.keep_alive is not None:
            body["keep_alive"] = request.keep_alive
        if request.think is not None and await self._supports_thinking(request.model):
            body["think"] = request.think
        started = time.perf_counter()
        data = await self._post_json("/api/chat", body, model=request.model)
        message = data.get("message") or {}
        completion = Completion(
            content=str(message.get("content") or ""),
            thinking=str(message.get("thinking") or ""),
            done_reason=str(data.get("done_reason") or "stop"),
            prompt_tokens=int(data.get("prompt_eval_count") or 0),
            eval_tokens=int(data.get("eval_count") or 0),
            total_s=float(data.get("total_duration") or 0) * _NS or time.perf_counter() - started,
            load_s=float(data.get("load_duration") or 0) * _NS,
            prompt_eval_s=float(data.get("prompt_eval_duration") or 0) * _NS,
            eval_s=float(data.get("eval_duration") or 0) * _NS,
        )
        if completion.done_reason == "length":
            raise TruncatedOutput(
                f"{request.model} stopped at num_predict={request.num_predict} before the "
                f"JSON was complete ({completion.eval_tokens} tokens"
                + (", thinking included)" if completion.thinking else ")"),
                content=completion.content,
                tokens=completion.eval_tokens,
            )
        return completion

    async def _supports_thinking(self, model: str) -> bool:
        caps = self._capabilities.get(model)
        if caps is None:
            try:
                caps = (await self.describe(model)).capabilities
            except ModelNotFound:
                raise
            except BackendError:
                return False  # unknown: sending think to a model without it is an error
        return "thinking" in caps

    # -- models ------------------------------------------------------------------------------

    async def health(self) -> BackendHealth:
        try:
            response = await self._client.get("/api/version", timeout=10.0)
        except httpx.HTTPError as exc:
            return BackendHealth(
                False,
                detail=f"cannot reach Ollama at {self.url} ({_describe(exc)}); is "
                "`ollama serve` running there?",
            )
        if response.status_code != 200:
            return BackendHealth(
                False, detail=f"{self.url}/api/version answered HTTP {response.status_code}"
            )
        return BackendHealth(True, version=str(response.json().get("version", "")))

    async def list_models(self) -> list[ModelInfo]:
        data = await self._get_json("/api/tags")
        result = []
        for entry in data.get("models") or []:
            details = entry.get("details") or {}
            result.append(
                ModelInfo(
                    name=str(entry.get("name") or entry.get("model")),
                    size_bytes=int(entry.get("size") or 0),
                    parameter_size=str(details.get("parameter_size") or ""),
                    quantization=str(details.get("quantization_level") or ""),
                    family=str(details.get("family") or ""),
                )
            )
        return result

    async def describe(self, model: str) -> ModelInfo:
        data = await self._post_json("/api/show", {"model": model}, model=model)
        details = data.get("details") or {}
        info = data.get("model_info") or {}
        context = next((int(v) for k, v in info.items() if k.endswith(".context_length")), None)
        capabilities = frozenset(str(c) for c in data.get("capabilities") or ())
        self._capabilities[model] = capabilities
        size = 0
        for entry in await self.list_models():
            if entry.name == model:
                size = entry.size_bytes
        return ModelInfo(
            name=model,
            size_bytes=size,
            parameter_size=str(details.get("parameter_size") or ""),
            quantization=str(details.get("quantization_level") or ""),
            family=str(details.get("family") or ""),
            capabilities=capabilities,
            context_length=context,
        )

    async def loaded(self) -> list[LoadedModel]:
        data = await self._get_json("/api/ps")
        return [
            LoadedModel(
                name=str(m.get("name") or m.get("model")),
                size_bytes=int(m.get("size") or 0),
                vram_bytes=int(m.get("size_vram") or 0),
                expires_at=m.get("expires_at"),
            )
            for m in data.get("models") or []
        ]

    async def load(self, model: str, runner: RunnerOptions, keep_alive: str | int) -> float:
        started = time.perf_counter()
        await self._post_json(
            "/api/chat",
            {
                "model": model,
                "messages": [],
                "keep_alive": keep_alive,
                "options": _runner_options(runner),
            },
            model=model,
        )
        return time.perf_counter() - started

    async def unload(self, model: str) -> None:
        await self._post_json(
            "/api/chat", {"model": model, "messages": [], "keep_alive": 0}, model=model
        )

    async def pull(self, model: str) -> AsyncIterator[dict[str, Any]]:
        """Stream /api/pull progress lines; an error line raises BackendRejected."""
        try:
            async with self._client.stream(
                "POST", "/api/pull", json={"model": model, "stream": True}, timeout=None
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    _raise_for(response, model)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if "error" in event:
                        raise BackendRejected(
                            f"pulling {model} failed: {event['error']}. Fix: check the tag "
                            "at https://ollama.com/library."
                        )
                    yield event
        except httpx.HTTPError as exc:
            raise _unavailable(self.url, exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- transport ---------------------------------------------------------------------------

    async def _get_json(self, path: str) -> dict[str, Any]:
        try:
            response = await self._client.get(path)
        except httpx.HTTPError as exc:
            raise _unavailable(self.url, exc) from exc
        if response.status_code != 200:
            _raise_for(response, None)
        return _json_body(response)

    async def _post_json(self, path: str, body: dict[str, Any], *, model: str) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise _unavailable(self.url, exc) from exc
        if response.status_code != 200:
            _raise_for(response, model)
        data = _json_body(response)
        if "error" in data:  # an error after HTTP 200 (as at the end of a stream)
            raise BackendUnavailable(f"Ollama reported an error: {data['error']}")
        return data


def _runner_options(runner: RunnerOptions) -> dict[str, Any]:
    options: dict[str, Any] = {"num_ctx": runner.num_ctx}
    if runner.num_gpu is not None:
        options["num_gpu"] = runner.num_gpu
    return options


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise BackendUnavailable(
            f"Ollama answered HTTP {response.status_code} with a body that is not JSON "
            f"({response.text[:80]!r})"
        ) from None
    if not isinstance(data, dict):
        raise BackendUnavailable(f"Ollama answered a JSON {type(data).__name__}, not an object")
    return data


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except ValueError:
        pass
    return response.text[:200] or response.reason_phrase


def _raise_for(response: httpx.Response, model: str | None) -> None:
    status = response.status_code
    text = _error_text(response)
    retry_after = _retry_after(response)
    if status == 404 and model is not None:
        raise ModelNotFound(
            f"model {model!r} is not on the Ollama server ({text}). Fix: run `ollama pull "
            f"{model}` (or `gen-service models pull`).",
            model=model,
        )
    if status in (429, 503):
        raise BackendUnavailable(
            f"Ollama is busy (HTTP {status}: {text})", status=status, retry_after=retry_after
        )
    if status >= 500:
        raise BackendUnavailable(f"Ollama failed (HTTP {status}: {text})", status=status)
    raise BackendRejected(f"Ollama rejected the request (HTTP {status}: {text})", status=status)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _describe(exc: httpx.HTTPError) -> str:
    name = type(exc).__name__
    return f"{name}: {exc}" if str(exc) else name


def _unavailable(url: str, exc: httpx.HTTPError) -> BackendUnavailable:  # or BackendDown
    if isinstance(exc, httpx.ConnectError):
        return BackendDown(
            f"cannot connect to Ollama at {url} ({_describe(exc)}); is `ollama serve` running?"
        )
    if isinstance(exc, httpx.TimeoutException):
        return BackendUnavailable(f"Ollama at {url} timed out ({_describe(exc)})")
    return BackendUnavailable(f"the connection to Ollama at {url} failed ({_describe(exc)})")
