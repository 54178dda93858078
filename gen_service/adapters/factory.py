"""Build the configured backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gen_service.adapters.backend import Backend, Capabilities
from gen_service.config import Config
from gen_service.errors import ConfigError


def make_backend(cfg: Config) -> Backend:
    b = cfg.backend
    if b.kind == "ollama":
        from gen_service.adapters.ollama import OllamaBackend

        return OllamaBackend(
            b.url,
            request_timeout_s=b.request_timeout_s,
            connect_timeout_s=b.connect_timeout_s,
            max_connections=max(16, b.num_parallel * 4),
        )
    if b.kind == "openai":
        from gen_service.adapters.openai_compat import OpenAIBackend

        api_key = None
        if b.api_key_env:
            api_key = os.environ.get(b.api_key_env)
            if not api_key:
                raise ConfigError(
                    f"[backend] api_key_env names {b.api_key_env!r}, but that environment "
                    "variable is empty or unset. Fix: export it (systemd: Environment= or "
                    "EnvironmentFile=), or remove api_key_env for a server without a key.",
                    key="backend.api_key_env",
                )
        endpoints = {m.name: m.endpoints for m in cfg.models.values() if m.endpoints}
        return OpenAIBackend(
            b.url,
            endpoints=endpoints,
            api_key=api_key,
            request_timeout_s=b.request_timeout_s,
            connect_timeout_s=b.connect_timeout_s,
            response_format=b.response_format,
        )
    from gen_service.adapters.llamacpp import LlamaCppBackend

    paths = {m.name: m.path for m in cfg.models.values() if m.path is not None}
    return LlamaCppBackend(paths, n_threads=b.n_threads)


def capabilities_for(cfg: Config) -> Capabilities:
    """What the configured backend can do, without opening it (``plan`` needs no backend)."""
    kind = cfg.backend.kind
    if kind == "ollama":
        from gen_service.adapters.ollama import OllamaBackend

        return OllamaBackend.capabilities
    if kind == "openai":
        from gen_service.adapters.openai_compat import OpenAIBackend

        return OpenAIBackend.capabilities
    from gen_service.adapters.llamacpp import LlamaCppBackend

    return LlamaCppBackend.capabilities


@asynccontextmanager
async def open_backend(cfg: Config) -> AsyncIterator[Backend]:
    backend = make_backend(cfg)
    try:
        yield backend
    finally:
        await backend.aclose()
