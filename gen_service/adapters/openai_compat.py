"""OpenAI-compatible servers over httpx: vLLM, llama.cpp's ``llama-server``, llama-cpp-python's
``python -m llama_cpp.server``, LM Studio, SGLang (SPEC §3).

One backend spreads a model's requests over the endpoints that serve it (least requests in
flight, ties round-robin), which is how a user scales past one GPU. The servers differ in ways
that matter, and this module learns them per endpoint instead of asking the user:

- **Structured output.** vLLM wants ``response_format: {"type": "json_schema", "json_schema":
  {...}}``; llama-cpp-python's server accepts only ``{"type": "json_object", "schema": S}`` and
  answers anything else with HTTP 500 wrapping a pydantic validation error about
  ``response_format``; llama-server takes both. In ``"auto"`` mode the first schema request to an
  endpoint tries ``json_schema``, falls back to ``json_object`` once when the refusal points at
  ``response_format``, and remembers what worked.
- **Thinking.** Qwen3's chat template (vLLM, llama-server) reads
  ``chat_template_kwargs.enable_thinking``, so ``ChatRequest.think`` is sent there when set; an
  endpoint that refuses the field loses it for good (llama-cpp-python ignores it silently).
- **Health.** vLLM and llama-server have ``/health`` beside ``/v1``; llama-cpp-python's server
  does not, so a 404 there falls back to ``GET /v1/models``.
- **Model names.** llama-cpp-python's server answers a chat for ANY model name with its default
  model, so whether a model is served is decided from ``/v1/models`` only (describe, load).

The API key travels only in the client's ``Authorization`` header; it never appears in a repr,
a log event or an error message (server messages that echo it are redacted).

Which error a failure becomes, and whether it is retried, is decided in
:mod:`gen_service.adapters._http` (shared with Ollama), including the diagnosis of a server
that died compiling a request's grammar; this backend only words the messages.

The endpoints, what is learned about each and the routing between them live in
:mod:`gen_service.adapters._openai_endpoints`; the request body, the model entries and the
words for errors in :mod:`gen_service.adapters._openai_wire`. This module sends the requests
and adapts to each server's answers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import httpx
import structlog

from gen_service.adapters._completions import cut_off, openai_completion, reply_limit
from gen_service.adapters._http import HttpServers, json_object
from gen_service.adapters._openai_endpoints import Endpoint, Router, normalize_url
from gen_service.adapters._openai_wire import OpenAIWording, chat_body, model_info
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
from gen_service.errors import BackendError, BackendUnavailable, ModelNotFound

ResponseFormatMode = Literal["auto", "json_schema", "json_object"]

_HEALTH_READ_TIMEOUT_S = 30.0

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """What one endpoint has done so far, for status pages and tests."""

    url: str
    in_flight: int  # chat requests waiting for an answer now
    requests_sent: int  # chat POSTs sent, format-detection retries included
    response_format: str  # "json_schema" | "json_object" | "" (not detected yet)
    template_kwargs: bool | None  # chat_template_kwargs accepted (True), refused (False), unknown


class OpenAIBackend(BackendBase):
    """A Backend over one or more OpenAI-compatible servers."""

    kind = "openai"
    capabilities = Capabilities(
        reports_vram=False,
        memory=ModelMemory.SERVER,
        can_pull=False,
        loads_explicitly=False,
        thinking=ThinkingSwitch.TEMPLATE_KWARGS,
    )

    def __init__(
        self,
        url: str,
        *,
        endpoints: Mapping[str, Sequence[str]] | None = None,
        api_key: str | None = None,
        request_timeout_s: float = 900.0,
        connect_timeout_s: float = 10.0,
        response_format: ResponseFormatMode = "auto",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = normalize_url(url, "backend.url")
        self._router = Router(self.url, endpoints)
        self._mode: ResponseFormatMode = response_format
        # Kept only to redact servers that echo the key back; never formatted anywhere.
        self._secret = api_key or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(request_timeout_s, connect=connect_timeout_s),
            # The service bounds concurrency itself (backend.num_parallel per model); a pool
            # limit here would only add a second, invisible queue.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            transport=transport,
        )
        self._http = HttpServers(self._client, OpenAIWording(self._secret), redact=self._redact)
        self._probe_timeout = httpx.Timeout(
            min(request_timeout_s, _HEALTH_READ_TIMEOUT_S), connect=connect_timeout_s
        )

    def __repr__(self) -> str:
        key = "set" if self._secret else "unset"
        return (
            f"OpenAIBackend(url={self.url!r}, endpoints={len(self._router.endpoints)}, "
            f"api_key={key}, response_format={self._mode!r})"
        )

    # -- what the service asks instead of the kind ---------------------------------------------

    def fix_unreachable(self) -> str:
        return f"start the server at {self.url} (or correct [backend] url)"

    def fix_missing_model(self, model: str, role: str) -> str:
        return (
            f"serve {model} at {self.url}, or set [models.{role}] name to a model the server lists"
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def endpoint_stats(self) -> list[EndpointStats]:
        """Per-endpoint counters, in the order the endpoints were configured."""
        return [
            EndpointStats(
                url=ep.base,
                in_flight=ep.in_flight,
                requests_sent=ep.requests_sent,
                response_format=(ep.response_format or "") if self._mode == "auto" else self._mode,
                template_kwargs=ep.template_kwargs,
            )
            for ep in self._router.endpoints
        ]

    # -- generation --------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> Completion:
        ep = self._router.pick(request.model)
        ep.in_flight += 1
        started = time.perf_counter()
        try:
            data = await self._post_chat(ep, request)
        except BackendUnavailable:
            ep.failed_at = time.monotonic()
            raise
        finally:
            ep.in_flight -= 1
        ep.failed_at = None
        return openai_completion(
            data,
            model=request.model,
            stopped_at=f"max_tokens={request.num_predict}",
            where=f" at {ep.base}",
            total_s=time.perf_counter() - started,
        )

    def _format_for(self, ep: Endpoint) -> Literal["json_schema", "json_object"]:
        if self._mode != "auto":
            return self._mode
        return ep.response_format or "json_schema"

    async def _post_chat(self, ep: Endpoint, request: ChatRequest) -> dict[str, Any]:
        # Each refusal we adapt to flips one remembered setting for good, so this loop runs at
        # most three times: as sent, without chat_template_kwargs, with json_object.
        while True:
            fmt = self._format_for(ep) if request.schema is not None else None
            send_kwargs = request.think is not None and ep.template_kwargs is not False
            body = chat_body(request, fmt, send_kwargs)
            url = f"{ep.base}/chat/completions"
            ep.requests_sent += 1
            response, cut = await self._http.request_capped(
                "POST",
                url,
                server=ep.base,
                json=body,
                max_bytes=reply_limit(request.num_predict),
                constrained_model=request.model if fmt is not None else None,
            )
            if cut and response.is_success:
                raise cut_off(request.model, request.num_predict, response.content, ep.base)
            if response.is_success:
                if fmt is not None and self._mode == "auto" and ep.response_format is None:
                    ep.response_format = fmt
                    log.info("backend.response_format_detected", endpoint=ep.base, mode=fmt)
                if send_kwargs:
                    ep.template_kwargs = True
                return json_object(response, url)
            message = self._http.message(response)
            lowered = message.lower()
            refusable = response.status_code in (400, 422, 500)
            if (
                refusable
                and send_kwargs
                and ("chat_template_kwargs" in lowered or "enable_thinking" in lowered)
            ):
                ep.template_kwargs = False
                log.warning("backend.template_kwargs_refused", endpoint=ep.base, error=message)
                continue
            if (
                refusable
                and fmt == "json_schema"
                and self._mode == "auto"
                # Not once json_schema has worked here: then the refusal is about this schema.
                # A concurrent first request may already have switched the endpoint.
                and ep.response_format != "json_schema"
                and ("response_format" in lowered or "json_schema" in lowered)
            ):
                if ep.response_format is None:
                    ep.response_format = "json_object"
                    log.info(
                        "backend.response_format_detected",
                        endpoint=ep.base,
                        mode="json_object",
                        refused="json_schema",
                    )
                continue
            raise self._http.error(response, server=ep.base, model=request.model, message=message)

    # -- models ------------------------------------------------------------------------------

    async def _served(self, ep: Endpoint) -> dict[str, ModelInfo]:
        url = f"{ep.base}/models"
        response = await self._http.request("GET", url, server=ep.base)
        if not response.is_success:
            raise self._http.error(response, server=ep.base, model=None, message=None)
        data = json_object(response, url).get("data")
        if not isinstance(data, list):
            raise BackendUnavailable(f"{url} answered without a 'data' list of models")
        return {
            str(item["id"]): model_info(item)
            for item in data
            if isinstance(item, dict) and "id" in item
        }

    async def _served_by(self, route: Sequence[Endpoint]) -> list[dict[str, ModelInfo]]:
        """The model listings of every endpoint that answers; raises only if none does."""
        listings: list[dict[str, ModelInfo]] = []
        failures: list[BackendError] = []
        for ep in route:
            try:
                listings.append(await self._served(ep))
            except BackendError as exc:
                failures.append(exc)
        if not listings:
            raise failures[0]
        return listings

    async def list_models(self) -> list[ModelInfo]:
        merged: dict[str, ModelInfo] = {}
        for listing in await self._served_by(self._router.endpoints):
            for name, info in listing.items():
                merged.setdefault(name, info)
        return list(merged.values())

    async def describe(self, model: str) -> ModelInfo:
        route = self._router.route(model)
        served: set[str] = set()
        for listing in await self._served_by(route):
            if model in listing:
                return listing[model]
            served.update(listing)
        where = ", ".join(ep.base for ep in route)
        names = ", ".join(sorted(served)) or "none"
        raise ModelNotFound(
            f"model {model!r} is not served at {where} (served: {names}); use one of the served "
            "names, or start the server with this model (vLLM: --served-model-name, "
            "llama-cpp-python: --model_alias)",
            model=model,
        )

    async def loaded(self) -> list[LoadedModel]:
        # The servers hold their models for as long as they run. Their memory is not this
        # machine's VRAM budget, so it is reported as 0 and the scheduler never counts it.
        return [
            LoadedModel(name=info.name, size_bytes=0, vram_bytes=0)
            for info in await self.list_models()
        ]

    async def load(self, model: str, runner: RunnerOptions, keep_alive: str | int) -> float:
        """Check that the model is served; the server loaded it at start, so this takes 0 s."""
        await self.describe(model)
        return 0.0

    async def unload(self, model: str) -> None:
        """Do nothing: these servers load their models at start and manage memory themselves
        (vLLM preallocates its KV cache); the OpenAI API has no call to release a model."""

    # -- health ------------------------------------------------------------------------------

    async def health(self) -> BackendHealth:
        """Probe every endpoint at once; ok while at least one answers, since routing passes
        over the ones that fail. ``detail`` names each endpoint's state."""
        endpoints = self._router.endpoints
        results: list[BackendHealth] = [BackendHealth(ok=False)] * len(endpoints)

        async def probe(index: int, ep: Endpoint) -> None:
            results[index] = await self._probe(ep)

        async with anyio.create_task_group() as tg:
            for index, ep in enumerate(endpoints):
                tg.start_soon(probe, index, ep)
        version = next((r.version for r in results if r.version), "")
        return BackendHealth(
            ok=any(r.ok for r in results),
            version=version,
            detail="; ".join(r.detail for r in results),
        )

    async def _probe(self, ep: Endpoint) -> BackendHealth:
        timeout = self._probe_timeout
        try:
            response = await self._http.request(
                "GET", f"{ep.root}/health", server=ep.base, timeouts=timeout
            )
            via = "/health"
            if response.status_code == 404:
                # llama-cpp-python's server has no /health; its model list proves it is up.
                response = await self._http.request(
                    "GET", f"{ep.base}/models", server=ep.base, timeouts=timeout
                )
                via = "/v1/models (the server has no /health)"
            if not response.is_success:
                message = self._http.message(response)
                hint = (
                    "; set the API key in the environment variable named by backend.api_key_env"
                    if response.status_code in (401, 403)
                    else ""
                )
                return BackendHealth(
                    ok=False,
                    detail=f"{ep.base} is not ready ({response.status_code}: {message}){hint}",
                )
        except BackendUnavailable as exc:
            return BackendHealth(ok=False, detail=str(exc))
        version = await self._version(ep)
        return BackendHealth(ok=True, version=version, detail=f"{ep.base} ok via {via}")

    async def _version(self, ep: Endpoint) -> str:
        """vLLM's {"version": "..."} at /version; "" from servers without it."""
        try:
            response = await self._client.get(f"{ep.root}/version", timeout=self._probe_timeout)
            payload = response.json() if response.is_success else None
        except (httpx.HTTPError, ValueError):
            return ""
        return str(payload.get("version", "")) if isinstance(payload, dict) else ""

    async def aclose(self) -> None:
        await self._client.aclose()
