"""JSON schemas sent to backends for constrained decoding.

Grammar converters (Ollama's, llama.cpp's, vLLM's) handle plain, self-contained schemas best,
so the pydantic schema is inlined: ``$ref`` to ``$defs`` replaced by the definition and
``title`` noise dropped.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel

BATCH_KEY = "samples"


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` with every local ``$ref`` replaced by its definition."""
    defs: dict[str, Any] = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def walk(node: Any, depth: int) -> Any:
        if depth > 50:
            raise ValueError("schema nests too deeply (recursive $ref?)")
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
                target = defs[ref.rsplit("/", 1)[1]]
                merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
                return walk(merged, depth + 1)
            return {
                k: walk(v, depth + 1)
                for k, v in node.items()
                if k not in ("$defs", "definitions", "title")
            }
        if isinstance(node, list):
            return [walk(v, depth + 1) for v in node]
        return node

    result: dict[str, Any] = walk(schema, 0)
    return result


def cap_strings(schema: Any, max_chars: int) -> Any:
    """A copy of ``schema`` where every free-text string has a ``maxLength`` of at most
    ``max_chars``. Under constrained decoding this bounds a runaway string (a small model
    repeating itself until num_predict) without touching validation of stored samples."""
    if isinstance(schema, dict):
        out = {k: cap_strings(v, max_chars) for k, v in schema.items()}
        if out.get("type") == "string" and "enum" not in out and "const" not in out:
            out["maxLength"] = min(int(out.get("maxLength", max_chars)), max_chars)
        return out
    if isinstance(schema, list):
        return [cap_strings(v, max_chars) for v in schema]
    return schema


def item_schema(model: type[BaseModel], max_string_chars: int | None = None) -> dict[str, Any]:
    return copy.deepcopy(_item_schema(model, max_string_chars))


@functools.lru_cache(maxsize=256)
def _item_schema(model: type[BaseModel], max_string_chars: int | None) -> dict[str, Any]:
    # Building a pydantic JSON schema costs ~4 ms; every batch of a type asks for the same one.
    schema = inline_refs(model.model_json_schema())
    if max_string_chars is not None:
        schema = cap_strings(schema, max_string_chars)
    return schema


def batch_schema(
    model: type[BaseModel], batch_size: int, *, max_string_chars: int | None = None
) -> dict[str, Any]:
    """``{"samples": [...]}`` holding exactly ``batch_size`` items of ``model``."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return {
        "type": "object",
        "properties": {
            BATCH_KEY: {
                "type": "array",
                # Shared, read-only: backends serialize it and never change it.
                "items": _item_schema(model, max_string_chars),
                "minItems": batch_size,
                "maxItems": batch_size,
            }
        },
        "required": [BATCH_KEY],
        "additionalProperties": False,
    }
