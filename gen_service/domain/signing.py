"""The near-duplicate signature of a stored sample (pure): its type's prose, signed."""

from __future__ import annotations

import json
from typing import Any

from gen_service.domain import dedup
from gen_service.domain.content import string_fields
from gen_service.domain.datatypes import REGISTRY


def signature_of(datatype: str, payload: str) -> bytes:
    """The signature of a stored sample's prose (its payload's JSON text); a payload today's
    model no longer reads is signed from all of its text."""
    data: Any = json.loads(payload)
    spec = REGISTRY.get(datatype)
    try:
        assert spec is not None
        text = spec.text_for_dedup(spec.model.model_validate(data))
    except Exception:
        text = "\n".join(t for _, _, t in string_fields(data))
    return dedup.signature_bytes(text)
