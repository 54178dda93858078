"""Numeric bounds under llama.cpp's grammar: expanded into enums the grammar enforces."""

from __future__ import annotations

import json

import pytest

from gen_service.adapters.llamacpp import bounds_as_enums


def test_small_ranges_become_enums() -> None:
    """Integers list every value; numbers step by 0.01; exclusive bounds drop the end."""
    schema = {
        "type": "object",
        "properties": {
            "capacity": {"type": "integer", "minimum": 1, "maximum": 10},
            "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "d"},
            "delta": {"type": "number", "exclusiveMinimum": -1, "maximum": 1},
        },
    }
    out = bounds_as_enums(schema)["properties"]
    assert out["capacity"] == {"enum": list(range(1, 11))}
    assert out["score"]["enum"][:3] == [0.0, 0.01, 0.02] and out["score"]["enum"][-1] == 1.0
    assert len(out["score"]["enum"]) == 101 and out["score"]["description"] == "d"
    assert out["delta"]["enum"][0] == -0.99 and out["delta"]["enum"][-1] == 1.0


def test_wide_or_open_ranges_are_left_alone() -> None:
    """A range too wide to list, or with one open end, keeps its plain type."""
    wide = {"type": "integer", "minimum": 0, "maximum": 100_000}
    open_end = {"type": "number", "minimum": 0}
    assert bounds_as_enums(wide) == wide
    assert bounds_as_enums(open_end) == open_end


@pytest.mark.llamacpp
def test_generated_numbers_stay_in_bounds() -> None:
    """With the enum grammar, SmolLM2's numbers respect the schema's bounds."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from gen_service.adapters.llamacpp import default_model_path

    schema = {
        "type": "object",
        "properties": {
            "scores": {
                "type": "array",
                "minItems": 6,
                "maxItems": 6,
                "items": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "level": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        "required": ["scores", "level"],
    }
    grammar = llama_cpp.LlamaGrammar.from_json_schema(
        json.dumps(bounds_as_enums(schema)), verbose=False
    )
    llm = llama_cpp.Llama(model_path=str(default_model_path()), n_ctx=512, verbose=False)
    try:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": "Rate six things from 0 to 100 and a level."}],
            grammar=grammar,
            max_tokens=120,
            temperature=1.0,
            seed=3,
        )
    finally:
        llm.close()
    data = json.loads(out["choices"][0]["message"]["content"])
    assert all(0 <= x <= 1 for x in data["scores"]) and 1 <= data["level"] <= 10
