"""JSON schemas sent to backends for constrained decoding.

Grammar converters (Ollama's, llama.cpp's, vLLM's) handle plain, self-contained schemas best,
so the pydantic schema is inlined: ``$ref`` to ``$defs`` replaced by the definition and
``title`` noise dropped. :func:`grammar_safe` goes further and rewrites a schema into one that
llama.cpp's grammar compiler can hold and enforce (see its docstring for the limit it stays
under).
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


def item_schema(
    model: type[BaseModel], max_string_chars: int | None = None, *, safe: bool = False
) -> dict[str, Any]:
    return copy.deepcopy(_item_schema(model, max_string_chars, safe))


@functools.lru_cache(maxsize=256)
def _item_schema(
    model: type[BaseModel], max_string_chars: int | None, safe: bool
) -> dict[str, Any]:
    # Building a pydantic JSON schema costs ~4 ms; every batch of a type asks for the same one.
    schema = inline_refs(model.model_json_schema())
    if max_string_chars is not None:
        schema = cap_strings(schema, max_string_chars)
    if safe:
        schema = grammar_safe(schema)
    return schema


def batch_schema(
    model: type[BaseModel],
    batch_size: int,
    *,
    max_string_chars: int | None = None,
    grammar_safe: bool = False,
) -> dict[str, Any]:
    """``{"samples": [...]}`` holding exactly ``batch_size`` items of ``model``; with
    ``grammar_safe`` the items are rewritten by :func:`grammar_safe` (the wrapper itself holds
    nothing that needs it, so the result equals ``grammar_safe(batch_schema(...))``)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    return {
        "type": "object",
        "properties": {
            BATCH_KEY: {
                "type": "array",
                # Shared, read-only: backends serialize it and never change it.
                "items": _item_schema(model, max_string_chars, grammar_safe),
                "minItems": batch_size,
                "maxItems": batch_size,
            }
        },
        "required": [BATCH_KEY],
        "additionalProperties": False,
    }


# -- grammar-safe schemas ---------------------------------------------------------------------

GRAMMAR_REPETITION_LIMIT = 2000
"""llama.cpp's ``MAX_REPETITION_THRESHOLD`` (src/llama-grammar.cpp): see :func:`grammar_safe`."""

GRAMMAR_MAX_STRING_CHARS = 800
"""The longest free-text field a grammar-safe schema allows: 20 % under the 1,000 characters at
which llama-cpp-python's schema converter produces a grammar llama.cpp refuses."""

_MAX_ENUM = 201  # values a bounded number may expand to (0..1 by 0.01 is 101; -1..1 is 201)

# Printable text without a quote, a backslash or a control character: a JSON string body that
# needs no escapes, so the pattern means the same on the raw JSON text and on the decoded value.
_TEXT_CHAR = r'[^"\\\x00-\x1f]'
# The "letters" text charset: letters, spaces and plain punctuation, no digits or markup. A tiny
# model (SmolLM2-135M) fills free text with dates, ids and numbers (every one a not_prose
# rejection); this forbids them in the grammar. Opt-in per model (text_charset = "letters").
_LETTER_CHAR = r"[A-Za-z ,.;:!?'()-]"


def grammar_safe(
    schema: Any, max_string_chars: int = GRAMMAR_MAX_STRING_CHARS, *, letters: bool = False
) -> Any:
    """A copy of ``schema`` that llama.cpp's grammar compiler can hold, and that says in the
    grammar what the data types otherwise only check afterwards. Pure; idempotent
    (``grammar_safe(grammar_safe(s)) == grammar_safe(s)``).

    **The limit.** Ollama, llama-server and llama-cpp-python all turn a JSON schema into a
    GBNF grammar and parse it with llama.cpp's grammar parser. That parser refuses a repetition
    (``x?``, ``x*``, ``x{m,n}``) once the rules the repeated item generated, times its maximum
    count, reach ``MAX_REPETITION_THRESHOLD`` = 2000 ("number of rules that are going to be
    repeated multiplied by the new repetition exceeds sane defaults"). llama-cpp-python's
    converter (``llama_cpp/llama_grammar.py``, used by ``python -m llama_cpp.server`` and by the
    embedded backend) writes a string of at most ``n`` more characters as ``n`` nested optional
    groups, ``(char (char (...)?)?)?``; the group ``k`` levels deep holds ``2k - 1`` generated
    rules, so ``maxLength - minLength`` of 1,001 or more is refused. The server then has no
    grammar sampler, and llama-cpp-python's server dies with a segmentation fault on the
    request. llama.cpp's C++ converter (Ollama, llama-server) writes ``char{m,n}`` instead,
    refused from ``n`` = 2000 (and, above 2000, silently unbounded). Measured with the installed
    llama-cpp-python 0.3.36: ``maxLength`` 1000 compiles, 1001 does not (see
    ``tests/domain/test_grammar_safe.py`` and ``tests/adapters/test_grammar_limits.py``).

    **The rewrite**, node by node:

    - free-text strings (no ``enum``, ``const``, ``pattern`` or ``format``) are capped at
      ``min(max_string_chars, GRAMMAR_MAX_STRING_CHARS)`` = 800 characters by default: 20 %
      under the limit above, and still far more than a field of these data types needs (a
      line of dialogue, a paragraph of notes). The length bounds go into a pattern that also
      makes the text start with a letter or digit: under a grammar a small model happily fills
      a required string with ``{`` or ``);,`` (seen with SmolLM2-135M in most dramatic-irony
      items), and the pattern forbids quotes, backslashes and control characters so that it
      means the same on the JSON text as on the decoded string.
    - small bounded numbers become an ``enum`` of their allowed values: llama-cpp-python's
      converter ignores ``minimum``/``maximum``, so a model could write an OCEAN score of 9.25
      that validation then rejects. Integers list each value in range, numbers the range in
      steps of 0.01 (two decimals, which is all the data types use); at most 201 values.

    With ``letters`` the free text is letters, spaces and plain punctuation only, starting with a
    letter (:data:`_LETTER_CHAR`): for tiny models that write numbers and ids where prose goes.

    Validation of the stored samples is unchanged: the pydantic models still check everything.
    """
    cap = max(1, min(max_string_chars, GRAMMAR_MAX_STRING_CHARS))
    return _safe(schema, cap, letters)


def _safe(node: Any, cap: int, letters: bool = False) -> Any:
    if isinstance(node, list):
        return [_safe(v, cap, letters) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _safe(v, cap, letters) for k, v in node.items()}
    kind = out.get("type")
    if kind == "string" and not {"enum", "const", "pattern", "format"} & set(out):
        _text_as_pattern(out, cap, letters)
    elif kind in ("integer", "number") and "enum" not in out:
        _bounds_as_enum(out)
    return out


def _text_as_pattern(node: dict[str, Any], cap: int, letters: bool = False) -> None:
    """Replace a string's length bounds, capped, by a pattern (see :func:`grammar_safe`)."""
    low = min(cap, max(1, int(node.pop("minLength", 1))))
    high = min(cap, max(low, int(node.pop("maxLength", cap))))
    first, rest = ("[A-Za-z]", _LETTER_CHAR) if letters else ("[A-Za-z0-9]", _TEXT_CHAR)
    node["pattern"] = f"^{first}{rest}{{{low - 1},{high - 1}}}$"


def _bounds_as_enum(node: dict[str, Any]) -> None:
    """Replace a small bounded range of numbers by the enum of its values."""
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if low is None or high is None:
        return
    step = 1 if node["type"] == "integer" else 0.01
    count = round((float(high) - float(low)) / step) + 1
    if not 1 <= count <= _MAX_ENUM:
        return
    values: list[float] | list[int] = [round(float(low) + i * step, 2) for i in range(count)]
    if "exclusiveMinimum" in node:
        values = values[1:]
    if "exclusiveMaximum" in node:
        values = values[:-1]
    if node["type"] == "integer":
        values = [int(v) for v in values]
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "type"):
        node.pop(key, None)
    node["enum"] = values
