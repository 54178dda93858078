"""The SQLite store: the source of truth (see :mod:`.core`), its schema (:mod:`.schema`), and
read-only access for the commands (:mod:`.readonly`).

The names below are imported on first use (PEP 562): ``gen-service status --json`` needs only
:func:`open_readonly` and :func:`query`, and importing the writer's side (aiosqlite, the
near-duplicate index with datasketch and SciPy) would cost it ~0.4 s of a 0.2 s budget
(SPEC §9.5)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gen_service.adapters.store.core import (
        RunInfo,
        Store,
        TypeCounts,
        iso,
        utc_offset_modifier,
    )
    from gen_service.adapters.store.readonly import open_readonly, query
    from gen_service.adapters.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "RunInfo",
    "Store",
    "TypeCounts",
    "iso",
    "open_readonly",
    "query",
    "utc_offset_modifier",
]

# name -> the submodule that defines it
_HOMES = {
    "MIGRATIONS": "schema",
    "SCHEMA_VERSION": "schema",
    "RunInfo": "core",
    "Store": "core",
    "TypeCounts": "core",
    "iso": "core",
    "utc_offset_modifier": "core",
    "open_readonly": "readonly",
    "query": "readonly",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
