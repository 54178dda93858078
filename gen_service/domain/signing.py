"""The near-duplicate signature of a stored sample (pure): its type's prose, signed."""

from __future__ import annotations

import json
from typing import Any

from gen_service.domain import dedup
from gen_service.domain.content import string_fields
from gen_service.domain.datatypes import REGISTRY


def prose_of(datatype: str, payload: str) -> str:
    """What a stored sample (its payload's JSON text) is signed from: its type's prose; a
    payload today's model no longer reads gives all of its text."""
    data: Any = json.loads(payload)
    spec = REGISTRY.get(datatype)
    try:
        assert spec is not None
        return spec.text_for_dedup(spec.model.model_validate(data))
    except Exception:
        return "\n".join(t for _, _, t in string_fields(data))


def signature_of(datatype: str, payload: str) -> bytes:
    """The signature of a stored sample's prose (see :func:`prose_of`)."""
    return dedup.signature_bytes(prose_of(datatype, payload))
