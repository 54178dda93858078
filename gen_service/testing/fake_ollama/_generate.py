"""What a chat answers: content from the request's schema (or a verdict, for a judge request),
the content faults, thinking text and the ``num_predict`` budget."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gen_service.testing.fake_ollama._gpu import Gpu
from gen_service.testing.fake_ollama._judge import is_judge_format, verdict
from gen_service.testing.fake_ollama._memory import string_literals
from gen_service.testing.fake_ollama._request import ChatRequest
from gen_service.testing.fake_ollama._schema import SchemaFaker, is_number
from gen_service.testing.fake_ollama._text import WORDS, sentences, tokens


@dataclass(frozen=True)
class Completion:
    content: str
    thinking: str
    done_reason: str
    prompt_tokens: int
    eval_tokens: int


def generate(gpu: Gpu, request: ChatRequest, faults: set[str], rng: random.Random) -> Completion:
    """The completion for ``request``, with the content faults in ``faults`` applied."""
    fmt = request.fmt
    key = json.dumps(shape_of(fmt), sort_keys=True)
    previous = gpu.previous_content(key) if "duplicate" in faults else None
    if previous is not None and isinstance(fmt, Mapping):
        # The same text again, under this request's constants and bounds.
        content = json.dumps(
            SchemaFaker(rng, fmt).refit(fmt, json.loads(previous)), ensure_ascii=False
        )
    elif previous is not None:
        content = previous
    else:
        if isinstance(fmt, Mapping):
            faker = SchemaFaker(rng, fmt)
            value = _structured(gpu, request, faker, fmt)
            if "invalid_items" in faults and faker.spoil_arrays(fmt, value) > 0:
                gpu.count_fault("invalid_items")
            content = json.dumps(value, ensure_ascii=False)
        elif fmt == "json":
            answer = {
                "answer": sentences(rng, 8, 20),
                "confidence": round(rng.random(), 2),
                "tags": [rng.choice(WORDS) for _ in range(rng.randint(1, 3))],
            }
            content = json.dumps(answer, ensure_ascii=False)
        else:
            content = sentences(rng, 30, 90)
        gpu.remember_content(key, content)

    if "think_in_content" in faults:
        gpu.count_fault("think_in_content")
        content = f"<think>{sentences(rng, 10, 30)}</think>\n{content}"
    if "fenced" in faults:
        gpu.count_fault("fenced")
        content = f"```json\n{content}\n```"
    done_reason = "stop"
    if "truncate" in faults and len(content) > 1:
        gpu.count_fault("truncate")
        content = content[: rng.randint(max(1, len(content) // 4), max(1, len(content) * 3 // 4))]
        done_reason = "length"

    thinking = sentences(rng, 40, 120) if request.think else ""
    budget = request.num_predict
    if budget is not None and tokens(thinking) + tokens(content) > budget:
        if tokens(thinking) >= budget:
            thinking, content = thinking[: budget * 4], ""
        else:
            content = content[: (budget - tokens(thinking)) * 4]
        done_reason = "length"

    prompt_tokens = sum(
        4 + tokens(str(m.get("content", ""))) for m in request.messages if isinstance(m, Mapping)
    )
    return Completion(
        content=content,
        thinking=thinking,
        done_reason=done_reason,
        prompt_tokens=prompt_tokens,
        eval_tokens=tokens(thinking) + tokens(content),
    )


# What varies between requests of one data type: the brief's constants and bounds (numeric
# enums too), the batch size, the lengths; the shape without them says "the same kind of
# answer".
_VARYING = frozenset(
    {
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
    }
)


def shape_of(schema: Any) -> Any:
    """``schema`` without what varies between requests of one kind (see ``_VARYING``);
    positional items collapse to the first one's shape."""
    if isinstance(schema, list):
        return [shape_of(v) for v in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {k: shape_of(v) for k, v in schema.items() if k not in _VARYING}
    enum = out.get("enum")
    if isinstance(enum, list) and enum and all(is_number(v) for v in enum):
        del out["enum"]  # a numeric range written as an enum (grammar-safe schemas)
    prefix = out.pop("prefixItems", None)
    if isinstance(prefix, list) and prefix:
        out["items"] = prefix[0]
    return out


def _structured(gpu: Gpu, request: ChatRequest, faker: SchemaFaker, fmt: Mapping[str, Any]) -> Any:
    """A value for a JSON-schema ``format``: a verdict for a judge request, else the faker's,
    whose ``samples`` items are remembered for the judge."""
    if is_judge_format(faker, fmt):
        text = "\n".join(
            str(m.get("content", "")) for m in request.messages if isinstance(m, Mapping)
        )
        item = gpu.recall_sample(string_literals(text))
        return verdict(faker, fmt, gpu.judge, item, text)
    value = faker.value(fmt)
    samples = value.get("samples") if isinstance(value, dict) else None
    if isinstance(samples, list):
        gpu.remember_samples(samples)
    return value
