"""The SQLite store: the source of truth (see :mod:`.core`), its schema (:mod:`.schema`)."""

from __future__ import annotations

from gen_service.adapters.store.core import (
    RunInfo,
    Store,
    TypeCounts,
    iso,
    open_readonly,
    query,
    utc_offset_modifier,
)
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
