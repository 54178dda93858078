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

from gen_service.adapters._completions import chat_messages, cut_off, reply_limit, truncated_output
from gen_service.adapters._http import Failure, HttpServers, Refusal, json_object
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
from gen_service.errors import (
    BackendError,
    BackendRejected,
    BackendUnavailable,
    ModelNotFound,
)

_NS = 1e-9


class OllamaBackend(BackendBase):
    kind = "ollama"
    capabilities = Capabilities(
        reports_vram=True,
        memory=ModelMemory.GPU_BUDGET,
        can_pull=True,
        loads_explicitly=True,
        thinking=ThinkingSwitch.TOP_LEVEL,
    )

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
        client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(request_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )
        self._http = HttpServers(client, _OllamaWording(self.url))
        self._client = client
        self._capabilities: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        return f"OllamaBackend(url={self.url!r})"

    # -- what the service asks instead of the kind ---------------------------------------------

    def canonical_name(self, model: str) -> str:
        """Ollama lists "llama3" as "llama3:latest"."""
        return model if ":" in model else f"{model}:latest"

    def fix_unreachable(self) -> str:
        return "start it: `ollama serve` (or set [backend] url to where Ollama listens)"

    def fix_missing_model(self, model: str, role: str) -> str:
        return f"run `ollama pull {model}` (or `gen-service models pull`)"

    # -- generation --------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> Completion:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": chat_messages(request.messages),
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
        if request.repeat_penalty is not None:
            body["options"]["repeat_penalty"] = request.repeat_penalty
        if request.keep_alive is not None:
            body["keep_alive"] = request.keep_alive
        if request.think is not None and await self._supports_thinking(request.model):
            body["think"] = request.think
        started = time.perf_counter()
        response, cut = await self._http.request_capped(
            "POST",
            "/api/chat",
            server=self.url,
            json=body,
            max_bytes=reply_limit(request.num_predict),
            constrained_model=request.model if request.schema is not None else None,
        )
        if cut and response.status_code == 200:
            raise cut_off(request.model, request.num_predict, response.content, self.url)
        data = self._answer(response, request.model)
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
            raise truncated_output(
                request.model,
                stopped_at=f"num_predict={request.num_predict}",
                tokens=completion.eval_tokens,
                content=completion.content,
                note=", thinking included" if completion.thinking else "",
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
            response = await self._http.request(
                "GET", "/api/version", server=self.url, timeouts=10.0
            )
        except BackendUnavailable as exc:
            return BackendHealth(False, detail=str(exc))
        if response.status_code != 200:
            return BackendHealth(
                False, detail=f"{self.url}/api/version answered HTTP {response.status_code}"
            )
        try:
            body = json_object(response, f"Ollama at {self.url}")
        except BackendUnavailable as exc:
            return BackendHealth(False, detail=str(exc))
        return BackendHealth(
            True, version=str(body.get("version", "")), test_double=bool(body.get("test_double"))
        )

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
                    raise self._http.error(response, server=self.url, model=model, message=None)
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
            raise self._http.transport_error(
                exc, method="POST", url="/api/pull", server=self.url, model=None
            ) from exc

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- transport ---------------------------------------------------------------------------

    async def _get_json(self, path: str) -> dict[str, Any]:
        response = await self._http.request("GET", path, server=self.url)
        if response.status_code != 200:
            raise self._http.error(response, server=self.url, model=None, message=None)
        return json_object(response, f"Ollama at {self.url}")

    async def _post_json(self, path: str, body: dict[str, Any], *, model: str) -> dict[str, Any]:
        response = await self._http.request("POST", path, server=self.url, json=body)
        return self._answer(response, model)

    def _answer(self, response: httpx.Response, model: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise self._http.error(response, server=self.url, model=model, message=None)
        data = json_object(response, f"Ollama at {self.url}")
        if "error" in data:  # an error after HTTP 200 (as at the end of a stream)
            raise BackendUnavailable(f"Ollama reported an error: {data['error']}")
        return data


class _OllamaWording:
    """Ollama's words for the errors :mod:`gen_service.adapters._http` decides."""

    def __init__(self, url: str) -> None:
        self._url = url

    def transport(
        self, failure: Failure, described: str, *, method: str, url: str, server: str
    ) -> str:
        if failure is Failure.REFUSED:
            return (
                f"cannot connect to Ollama at {self._url} ({described}); is `ollama serve` running?"
            )
        if failure in (Failure.STALLED, Failure.TIMEOUT):
            return f"Ollama at {self._url} timed out ({described})"
        return f"the connection to Ollama at {self._url} failed ({described})"

    def refusal(
        self, refusal: Refusal, said: str, *, status: int, url: str, server: str, model: str | None
    ) -> str:
        if refusal is Refusal.MODEL_MISSING:
            return (
                f"model {model!r} is not on the Ollama server ({said}). Fix: run `ollama pull "
                f"{model}` (or `gen-service models pull`)."
            )
        if refusal is Refusal.NO_ROUTE:
            return (
                f"{url} does not exist (HTTP {said}); [backend] url must be Ollama's base URL, "
                "e.g. http://127.0.0.1:11434"
            )
        if refusal is Refusal.BUSY:
            return f"Ollama is busy (HTTP {said})"
        if refusal is Refusal.FAILED:
            return f"Ollama failed (HTTP {said})"
        return f"Ollama rejected the request (HTTP {said})"


def _runner_options(runner: RunnerOptions) -> dict[str, Any]:
    options: dict[str, Any] = {"num_ctx": runner.num_ctx}
    if runner.num_gpu is not None:
        options["num_gpu"] = runner.num_gpu
    return options
