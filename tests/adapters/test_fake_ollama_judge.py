"""The fake Ollama as a judge, over real HTTP on 127.0.0.1: verdicts consistent with what it
generated, at configured shares of low quality and of disagreeing labels."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.schema import batch_schema, item_schema
from gen_service.errors import EXIT_USAGE
from gen_service.testing import FakeConfig, FakeOllama, JudgeBehaviour

OCEAN = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
KINDS = ("tone_deaf", "misguided", "growth")
DIMENSIONS = ("authenticity", "consistency", "complexity", "usability")
UNIT = {"type": "number", "minimum": 0, "maximum": 1}

LABEL_SCHEMAS: dict[str, dict[str, Any]] = {
    "ocean": {
        "type": "object",
        "properties": dict.fromkeys(OCEAN, UNIT),
        "required": list(OCEAN),
    },
    "dominant_trait": {"type": "string", "enum": list(OCEAN)},
    "capacity_band": {"type": "string", "enum": ["low", "mid", "high"]},
    "support_level": item_schema(REGISTRY["emotional_authenticity"].model)["properties"][
        "support_level"
    ],
    "option_kinds": {
        "type": "array",
        "items": {"type": "string", "enum": list(KINDS)},
        "minItems": 3,
        "maxItems": 3,
    },
    "reveals_hidden_knowledge": {"type": "boolean"},
    "score": UNIT,
}
# The labels a judge re-derives per data type, and the keys the judge must not see.
TYPE_LABELS: dict[str, tuple[str, ...]] = {
    "emotional_authenticity": ("ocean", "dominant_trait", "capacity_band", "support_level"),
    "dramatic_irony": ("ocean", "capacity_band", "option_kinds", "reveals_hidden_knowledge"),
    "personality_traits": ("ocean", "dominant_trait"),
    "relationship_scoring": ("score",),
}
HIDDEN: dict[str, tuple[str, ...]] = {
    "emotional_authenticity": ("support_level", "emotional_capacity"),
    "dramatic_irony": ("options",),
    "personality_traits": ("ocean", "dominant_trait"),
    "relationship_scoring": ("score",),
}


def judge_schema(labels: tuple[str, ...] = ()) -> dict[str, Any]:
    properties: dict[str, Any] = {name: UNIT for name in DIMENSIONS}
    properties["issues"] = {"type": "array", "items": {"type": "string", "maxLength": 300}}
    properties["recommendation"] = {"type": "string"}
    properties["verdict_id"] = {"type": "integer", "minimum": 1, "maximum": 9}  # faked as usual
    if labels:
        properties["labels"] = {
            "type": "object",
            "properties": {name: LABEL_SCHEMAS[name] for name in labels},
            "required": list(labels),
        }
    return {"type": "object", "properties": properties, "required": list(properties)}


@contextmanager
def serve(**config: Any) -> Iterator[tuple[FakeOllama, httpx.Client]]:
    with (
        FakeOllama(FakeConfig(**config)) as fake,
        httpx.Client(base_url=fake.url, timeout=10) as client,
    ):
        yield fake, client


def chat(client: httpx.Client, fmt: dict[str, Any], content: str) -> Any:
    body = {
        "model": "qwen3:8b",
        "messages": [
            {"role": "system", "content": "You judge training samples."},
            {"role": "user", "content": content},
        ],
        "format": fmt,
        "stream": False,
    }
    response = client.post("/api/chat", json=body)
    assert response.status_code == 200
    return json.loads(response.json()["message"]["content"])


def generate(client: httpx.Client, datatype: str, count: int = 3) -> list[dict[str, Any]]:
    schema = batch_schema(REGISTRY[datatype].model, count)
    samples: list[dict[str, Any]] = chat(client, schema, f"Write {count} samples.")["samples"]
    assert len(samples) == count
    return samples


def judge_prompt(datatype: str, item: dict[str, Any], order: tuple[str, ...]) -> str:
    """The sample as the service shows it: pretty-printed JSON, labels hidden, the irony
    options as an unlabelled list in ``order``."""
    shown = {k: v for k, v in item.items() if k not in HIDDEN[datatype]}
    text = "Judge this sample.\n" + json.dumps(shown, indent=2, ensure_ascii=False)
    if datatype == "dramatic_irony":
        options = [{"text": item["options"][kind]["dialogue"]} for kind in order]
        text += "\nIts three options:\n" + json.dumps(options, indent=2, ensure_ascii=False)
    return text


def ocean_of(item: dict[str, Any]) -> dict[str, float]:
    ocean: dict[str, float] = item.get("ocean") or item["character"]["ocean"]
    return ocean


def capacity_of(item: dict[str, Any]) -> int:
    capacity: int = item.get("emotional_capacity") or item["character"]["emotional_capacity"]
    return capacity


def top_trait(ocean: dict[str, float]) -> str:
    best = max(ocean[t] for t in OCEAN)
    return next(t for t in OCEAN if ocean[t] == best)


def band(capacity: int) -> str:
    return "low" if capacity <= 3 else "mid" if capacity <= 7 else "high"


def judged(
    datatype: str, disagree: float, seed: int = 5
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...], FakeOllama]:
    """(the judged item, the verdict's labels, the option order shown, the fake)."""
    order = ("growth", "tone_deaf", "misguided")
    with serve(seed=seed, judge=JudgeBehaviour(label_disagreement_share=disagree)) as (
        fake,
        client,
    ):
        item = generate(client, datatype)[1]
        verdict = chat(
            client, judge_schema(TYPE_LABELS[datatype]), judge_prompt(datatype, item, order)
        )
    return item, verdict["labels"], order, fake


# --------------------------------------------------------------------------- labels


@pytest.mark.parametrize("datatype", sorted(TYPE_LABELS))
def test_labels_agree_with_the_quoted_sample(datatype: str) -> None:
    """At disagreement share 0 every label is the one the judged sample implies."""
    item, labels, order, fake = judged(datatype, disagree=0.0)
    assert set(labels) == set(TYPE_LABELS[datatype])
    if "ocean" in labels:
        assert labels["ocean"] == ocean_of(item)
    if "dominant_trait" in labels:
        assert labels["dominant_trait"] == top_trait(ocean_of(item))
    if "capacity_band" in labels:
        assert labels["capacity_band"] == band(capacity_of(item))
    if "support_level" in labels:
        assert labels["support_level"] == item["support_level"]
    if "option_kinds" in labels:
        assert labels["option_kinds"] == list(order)
    if "reveals_hidden_knowledge" in labels:
        assert labels["reveals_hidden_knowledge"] is False
    if "score" in labels:
        assert labels["score"] == item["score"]
    stats = fake.stats()
    assert stats.judge_requests == 1 and stats.judge_matched == 1


@pytest.mark.parametrize("datatype", sorted(TYPE_LABELS))
def test_labels_disagree_with_the_quoted_sample(datatype: str) -> None:
    """At disagreement share 1 every label differs from the one the judged sample implies."""
    item, labels, order, _ = judged(datatype, disagree=1.0)
    if "ocean" in labels:
        truth, ocean = ocean_of(item), labels["ocean"]
        assert all(0 <= ocean[t] <= 1 for t in OCEAN)
        assert sum(abs(ocean[t] - truth[t]) for t in OCEAN) / 5 > 0.15
        assert top_trait(ocean) != top_trait(truth)
    if "dominant_trait" in labels:
        assert labels["dominant_trait"] != top_trait(ocean_of(item))
        if "ocean" in labels:
            assert labels["dominant_trait"] == top_trait(labels["ocean"])
    if "capacity_band" in labels:
        assert labels["capacity_band"] in ("low", "mid", "high")
        assert labels["capacity_band"] != band(capacity_of(item))
    if "support_level" in labels:
        assert labels["support_level"] in LABEL_SCHEMAS["support_level"]["enum"]
        assert labels["support_level"] != item["support_level"]
    if "option_kinds" in labels:
        kinds = labels["option_kinds"]
        assert sorted(kinds) == sorted(KINDS)
        assert sum(a != b for a, b in zip(kinds, order, strict=True)) == 2
    if "reveals_hidden_knowledge" in labels:
        assert labels["reveals_hidden_knowledge"] is True
    if "score" in labels:
        assert 0 <= labels["score"] <= 1 and abs(labels["score"] - item["score"]) >= 0.3


@pytest.mark.parametrize(
    "profile",
    [
        dict.fromkeys(OCEAN, 0.2),
        dict.fromkeys(OCEAN, 0.9),
        dict.fromkeys(OCEAN, 0.5),
        {"openness": 0.4, **dict.fromkeys(OCEAN[1:], 0.1)},
        {"openness": 0.9, **dict.fromkeys(OCEAN[1:], 0.6)},
        {"openness": 0.0, "conscientiousness": 1.0, **dict.fromkeys(OCEAN[2:], 0.55)},
    ],
)
def test_disagreeing_ocean_changes_the_top_trait_of_any_profile(profile: dict[str, float]) -> None:
    """Every profile, even one with all traits on one side of 0.5, gets a far ocean (mean error
    above 0.15) with another top trait, and the dominant trait follows it."""
    line = "a line long enough to be indexed by the fake judge"
    item_schema = {
        "type": "object",
        "properties": {
            "dialogue": {"const": line},
            "ocean": {
                "type": "object",
                "properties": {t: {"const": v} for t, v in profile.items()},
            },
        },
    }
    batch = {"type": "object", "properties": {"samples": {"type": "array", "items": item_schema}}}
    with serve(judge=JudgeBehaviour(label_disagreement_share=1.0)) as (_, client):
        chat(client, batch, "Write a sample.")
        labels = chat(client, judge_schema(("ocean", "dominant_trait")), json.dumps(line))["labels"]
    ocean = labels["ocean"]
    assert all(0 <= ocean[t] <= 1 for t in OCEAN)
    assert sum(abs(ocean[t] - profile[t]) for t in OCEAN) / 5 > 0.15
    assert top_trait(ocean) != top_trait(profile)
    assert labels["dominant_trait"] == top_trait(ocean)


def test_unknown_sample_gets_labels_from_the_schema() -> None:
    """A judge request quoting nothing the fake generated gets schema-valid faked labels."""
    with serve() as (fake, client):
        generate(client, "personality_traits")
        prompt = json.dumps({"dialogue": "a line this fake never wrote, long enough to index"})
        verdict = chat(client, judge_schema(TYPE_LABELS["personality_traits"]), prompt)
        stats = fake.stats()
    assert verdict["labels"]["dominant_trait"] in OCEAN
    assert all(0 <= verdict["labels"]["ocean"][t] <= 1 for t in OCEAN)
    assert stats.judge_requests == 1 and stats.judge_matched == 0


def test_memory_forgets_the_least_recently_used_items() -> None:
    """With room for two items, the first of a batch of three is forgotten, the last is not."""
    schema = judge_schema(("ocean",))
    with serve(remembered_items=2) as (fake, client):
        first, _, last = generate(client, "personality_traits")
        chat(client, schema, judge_prompt("personality_traits", first, KINDS))
        assert fake.stats().judge_matched == 0
        labels = chat(client, schema, judge_prompt("personality_traits", last, KINDS))["labels"]
        assert fake.stats().judge_matched == 1
    assert labels["ocean"] == last["ocean"]


# --------------------------------------------------------------------------- quality


def test_quality_split_follows_the_low_quality_share() -> None:
    """About low_quality_share of verdicts score all four dimensions in [0.30, 0.65]; the rest
    in [0.75, 0.98]; low ones list more issues."""
    schema = judge_schema()
    lows = 0
    count = 200
    with serve(seed=11, judge=JudgeBehaviour(low_quality_share=0.3)) as (fake, client):
        for _ in range(count):
            verdict = chat(client, schema, "Judge this sample.")
            scores = [verdict[d] for d in DIMENSIONS]
            assert all(round(s, 2) == s for s in scores)
            low = all(0.30 <= s <= 0.65 for s in scores)
            assert low or all(0.75 <= s <= 0.98 for s in scores)
            assert (2 <= len(verdict["issues"]) <= 4) if low else (len(verdict["issues"]) <= 2)
            assert all(0 < len(issue) <= 300 for issue in verdict["issues"])
            assert verdict["recommendation"].endswith(".")
            assert 1 <= verdict["verdict_id"] <= 9
            lows += low
        assert fake.stats().judge_requests == count
    assert 40 <= lows <= 80  # binomial(200, 0.3): mean 60, sd 6.5


@pytest.mark.parametrize(("share", "low"), [(0.0, False), (1.0, True)])
def test_quality_shares_zero_and_one(share: float, low: bool) -> None:
    """Share 0 never scores low; share 1 always does."""
    with serve(judge=JudgeBehaviour(low_quality_share=share)) as (_, client):
        for _ in range(20):
            verdict = chat(client, judge_schema(), "Judge this sample.")
            assert all((verdict[d] <= 0.65) is low for d in DIMENSIONS)


def test_a_schema_without_all_five_keys_is_not_a_judge_request() -> None:
    """A format lacking one of the five verdict keys is faked, not judged."""
    schema = judge_schema()
    del schema["properties"]["recommendation"]
    schema["required"].remove("recommendation")
    with serve(judge=JudgeBehaviour(low_quality_share=1.0)) as (fake, client):
        for _ in range(10):
            chat(client, schema, "Judge this sample.")
        assert fake.stats().judge_requests == 0


# --------------------------------------------------------------------------- control


def test_judge_behaviour_is_set_over_http() -> None:
    """GET/POST /_fake/judge read and replace the behaviour; bad bodies are 400."""
    with serve() as (_, client):
        assert client.get("/_fake/judge").json() == {
            "low_quality_share": 0.0,
            "label_disagreement_share": 0.0,
        }
        set_both = {"low_quality_share": 1.0, "label_disagreement_share": 1.0}
        assert client.post("/_fake/judge", json=set_both).json() == set_both
        item = generate(client, "relationship_scoring")[0]
        prompt = judge_prompt("relationship_scoring", item, KINDS)
        verdict = chat(client, judge_schema(("score",)), prompt)
        assert verdict["authenticity"] <= 0.65
        assert abs(verdict["labels"]["score"] - item["score"]) >= 0.3
        assert client.post("/_fake/judge", json={"bogus": 1}).status_code == 400
        assert client.post("/_fake/judge", json={"low_quality_share": 2}).status_code == 400
        assert client.get("/_fake/stats").json()["judge_requests"] == 1


def test_judge_behaviour_must_hold_probabilities() -> None:
    """A share outside [0, 1] is refused."""
    with pytest.raises(ValueError):
        JudgeBehaviour(low_quality_share=1.5)
    with pytest.raises(ValueError):
        FakeConfig(remembered_items=-1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_flags_set_the_judge() -> None:
    """gen-service fake-ollama --judge-low-share/--judge-disagree-share reach the fake."""
    port = _free_port()
    flags = ["--judge-low-share", "0.25", "--judge-disagree-share", "0.5"]
    command = [sys.executable, "-m", "gen_service", "fake-ollama", "--port", str(port), *flags]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/_fake/judge", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the fake did not start"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    assert reply.json() == {"low_quality_share": 0.25, "label_disagreement_share": 0.5}


def test_cli_refuses_a_share_outside_zero_to_one() -> None:
    """A judge share outside [0, 1] is a usage error, before anything listens."""
    from gen_service.cli import main

    assert main(["fake-ollama", "--judge-disagree-share", "1.5"]) == EXIT_USAGE
    assert main(["fake-ollama", "--judge-low-share", "x"]) == EXIT_USAGE


def test_verdicts_repeat_for_the_same_seed() -> None:
    """Two fakes with the same seed judge the same request sequence identically."""
    verdicts = []
    for _ in range(2):
        rng = random.Random(0)
        with serve(seed=3, judge=JudgeBehaviour(0.5, 0.5)) as (_, client):
            item = generate(client, "dramatic_irony")[rng.randrange(3)]
            schema = judge_schema(TYPE_LABELS["dramatic_irony"])
            verdicts.append(chat(client, schema, judge_prompt("dramatic_irony", item, KINDS)))
    assert verdicts[0] == verdicts[1]


def test_dimensions_follow_the_shares_in_the_service_s_grammar_safe_schema() -> None:
    """The service sends grammar-safe verdict schemas, where 0..1 is an enum of two-decimal
    values: the dimensions still come from the high range at low share 0 and from the low one
    at low share 1."""
    from gen_service.domain.judging import verdict_schema
    from gen_service.domain.schema import grammar_safe

    schema = grammar_safe(verdict_schema(REGISTRY["tension_building"]))
    assert "enum" in schema["properties"]["authenticity"]
    for share, (lo, hi) in ((0.0, (0.75, 0.98)), (1.0, (0.30, 0.65))):
        with serve(seed=3, judge=JudgeBehaviour(low_quality_share=share)) as (_, client):
            for _ in range(5):
                verdict = chat(client, schema, "Judge this sample.")
                assert all(lo <= verdict[d] <= hi for d in DIMENSIONS), verdict
