"""Test doubles shipped with gen-service: the fake Ollama server (``fake_ollama``)."""

from __future__ import annotations

from gen_service.testing.fake_ollama import (
    FakeConfig,
    FakeModel,
    FakeOllama,
    FakeStats,
    FaultRates,
    JudgeBehaviour,
    LoadEvent,
    default_models,
    kv_cache_bytes,
    serve_forever,
)

__all__ = [
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
