"""Dedup signatures (pure): the canonical content hash for exact duplicates."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_SPACE = re.compile(r"\s+")


def canonical(value: Any) -> Any:
    """Content with cosmetic differences removed: key order, case, spacing, float noise."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, str):
        return _SPACE.sub(" ", value).strip().casefold()
    if isinstance(value, float):
        return round(value, 3)
    return value


def content_hash(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``value`` (a sample's dedup text, or any JSON
    value); equal for exact duplicates."""
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
