"""The fake Ollama, exercised over real HTTP on 127.0.0.1 with httpx."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from gen_service.domain.schema import grammar_safe
from gen_service.testing import FakeConfig, FakeModel, FakeOllama, FaultRates, kv_cache_bytes

USER = [{"role": "user", "content": "Write two samples."}]

ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 10, "maxLength": 40},
        "answer": {"type": "string"},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 5},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "topic": {"enum": ["math", "history", "art"]},
        "kind": {"const": "qa"},
        "verified": {"type": "boolean"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "meta": {"$ref": "#/$defs/Meta"},
        "extra": {"allOf": [{"$ref": "#/definitions/Extra"}, {"required": ["b"]}]},
    },
    "required": ["question", "answer", "difficulty", "score", "topic", "kind"],
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"samples": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
    "required": ["samples"],
    "$defs": {
        "Item": ITEM_SCHEMA,
        "Meta": {
            "type": "object",
            "properties": {"tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
            "required": ["tags"],
        },
    },
    "definitions": {
        "Extra": {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 10}, "b": {"type": "null"}},
            "required": ["a"],
        }
    },
}


def samples_schema(count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "samples": {
                "type": "array",
                "minItems": count,
                "maxItems": count,
                "items": {
                    "type": "object",
                    "properties": {
                        "q": {"type": "string"},
                        "n": {"type": "integer", "minimum": 1, "maximum": 5},
                    },
                    "required": ["q", "n"],
                },
            }
        },
        "required": ["samples"],
    }


def chat_body(model: str = "qwen3:8b", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": USER, "stream": False, **extra}


def check_item(item: dict[str, Any]) -> None:
    """Simple assertions standing in for a JSON-schema validator."""
    assert set(ITEM_SCHEMA["required"]) <= set(item)
    assert 10 <= len(item["question"]) <= 40
    assert isinstance(item["answer"], str) and item["answer"]
    assert isinstance(item["difficulty"], int) and 1 <= item["difficulty"] <= 5
    assert 0 < item["score"] < 1 and round(item["score"], 2) == item["score"]
    assert item["topic"] in ("math", "history", "art")
    assert item["kind"] == "qa"
    assert isinstance(item["verified"], bool)
    assert item["note"] is None or isinstance(item["note"], str)
    assert isinstance(item["meta"]["tags"], list) and len(item["meta"]["tags"]) <= 2
    assert all(isinstance(t, str) for t in item["meta"]["tags"])
    assert isinstance(item["extra"]["a"], int) and item["extra"]["a"] >= 10
    assert item["extra"]["b"] is None


@contextmanager
def serve(config: FakeConfig | None = None) -> Iterator[tuple[FakeOllama, httpx.Client]]:
    with (
        FakeOllama(config or FakeConfig()) as fake,
        httpx.Client(base_url=fake.url, timeout=10) as client,
    ):
        yield fake, client


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(FakeConfig()) as server:
        yield server


@pytest.fixture
def client(fake: FakeOllama) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=10) as c:
        yield c


def resident(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client.get("/api/ps").json()["models"]}


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll for a state change (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# --------------------------------------------------------------------------- content


def test_content_follows_the_schema(client: httpx.Client) -> None:
    """Content is JSON that satisfies the request's schema, $ref/allOf/anyOf/enum included."""
    strings: list[str] = []
    for _ in range(20):
        reply = client.post("/api/chat", json=chat_body(format=SCHEMA)).json()
        assert reply["done"] is True and reply["done_reason"] == "stop"
        samples = json.loads(reply["message"]["content"])["samples"]
        assert 1 <= len(samples) <= 3
        for item in samples:
            check_item(item)
            strings.append(item["answer"])
    assert len(set(strings)) == len(strings)


KEYWORDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "kind": {"const": "scene"},
        "mood": {"type": "string", "enum": ["calm", "tense"]},
        "weight": {"type": "number", "minimum": 0.25, "maximum": 0.5},
        "gap": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.02},
        "level": {"type": "integer", "exclusiveMinimum": 2, "exclusiveMaximum": 5},
        "name": {"type": "string", "minLength": 60, "maxLength": 64},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 4, "maxItems": 6},
        "pair": {
            "type": "array",
            "prefixItems": [{"type": "integer", "minimum": 7, "maximum": 7}, {"enum": ["x"]}],
            "items": False,
        },
        "head": {
            "type": "array",
            "prefixItems": [{"const": "first"}],
            "items": {"type": "integer", "minimum": 100},
            "minItems": 3,
            "maxItems": 4,
        },
        "cut": {
            "type": "array",
            "prefixItems": [{"const": 1}, {"const": 2}, {"const": 3}],
            "items": False,
            "maxItems": 2,
        },
        "text": grammar_safe({"type": "string", "minLength": 50, "maxLength": 60}),
        "long": grammar_safe({"type": "string", "minLength": 200}),
    },
}


def test_schema_keywords_are_honoured(client: httpx.Client) -> None:
    """const, enum, numeric bounds, string lengths, item counts and prefixItems all hold."""
    text_pattern = KEYWORDS_SCHEMA["properties"]["text"]["pattern"]
    long_pattern = KEYWORDS_SCHEMA["properties"]["long"]["pattern"]
    for _ in range(30):
        reply = client.post("/api/chat", json=chat_body(format=KEYWORDS_SCHEMA)).json()
        value = json.loads(reply["message"]["content"])
        assert value["kind"] == "scene" and value["mood"] in ("calm", "tense")
        assert 0.25 <= value["weight"] <= 0.5 and 0 < value["gap"] < 0.02
        assert value["level"] in (3, 4)
        assert 60 <= len(value["name"]) <= 64
        assert 4 <= len(value["tags"]) <= 6
        assert value["pair"] == [7, "x"]
        head, *rest = value["head"]
        assert head == "first" and 2 <= len(rest) <= 3
        assert all(isinstance(n, int) and n >= 100 for n in rest)
        assert value["cut"] in ([1], [1, 2])
        assert re.search(text_pattern, value["text"]), value["text"]
        assert re.search(long_pattern, value["long"]) and len(value["long"]) >= 200


def test_prefix_items_without_bounds_fill_every_position(client: httpx.Client) -> None:
    """A tuple schema (prefixItems, no minItems/maxItems) gets one value per position."""
    schema = {
        "type": "array",
        "prefixItems": [{"type": "boolean"}, {"type": "integer"}, {"type": "string"}],
    }
    for _ in range(10):
        reply = client.post("/api/chat", json=chat_body(format=schema)).json()
        first, second, third = json.loads(reply["message"]["content"])
        assert isinstance(first, bool) and isinstance(second, int) and isinstance(third, str)


def test_min_items_equal_max_items_gives_that_many(client: httpx.Client) -> None:
    """minItems == maxItems yields exactly that many items."""
    for count in (0, 1, 7):
        reply = client.post("/api/chat", json=chat_body(format=samples_schema(count))).json()
        assert len(json.loads(reply["message"]["content"])["samples"]) == count


def test_chat_reports_ollama_fields(client: httpx.Client) -> None:
    """A non-streaming reply carries Ollama's fields, durations in ns, eval_count ≈ chars/4."""
    reply = client.post("/api/chat", json=chat_body(format="json")).json()
    assert reply["model"] == "qwen3:8b" and reply["created_at"].endswith("Z")
    assert reply["message"]["role"] == "assistant"
    assert isinstance(json.loads(reply["message"]["content"]), dict)
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(reply[key], int) and reply[key] > 0
    assert reply["load_duration"] >= 5 * 10**9  # the first request loaded the model
    assert reply["prompt_eval_count"] > 0
    assert reply["eval_count"] == -(-len(reply["message"]["content"]) // 4)
    second = client.post("/api/chat", json=chat_body()).json()
    assert second["load_duration"] < 10**9
    assert len(second["message"]["content"].split()) >= 20  # no format: prose


def test_same_seed_same_content() -> None:
    """Two fakes with the same seed answer the same request sequence identically."""
    contents = []
    for _ in range(2):
        with serve(FakeConfig(seed=7)) as (_, client):
            reply = client.post("/api/chat", json=chat_body(format=SCHEMA)).json()
            contents.append(reply["message"]["content"])
    assert contents[0] == contents[1]


def test_streaming_chat_sends_ndjson_chunks(client: httpx.Client) -> None:
    """stream omitted: NDJSON chunks whose contents join into the answer, then a done line."""
    body = {"model": "qwen3:8b", "messages": USER, "format": samples_schema(2), "think": True}
    with client.stream("POST", "/api/chat", json=body) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *chunks, final = lines
    assert all(c["done"] is False for c in chunks) and final["done"] is True
    assert final["done_reason"] == "stop" and final["eval_count"] > 0
    content = "".join(c["message"]["content"] for c in chunks)
    thinking = "".join(c["message"].get("thinking", "") for c in chunks)
    assert len(json.loads(content)["samples"]) == 2
    assert len(thinking.split()) >= 40


# --------------------------------------------------------------------------- errors


def test_unknown_model_is_404(client: httpx.Client) -> None:
    """An unknown model answers 404 with Ollama's message."""
    response = client.post("/api/chat", json=chat_body("nope:1b"))
    assert response.status_code == 404
    assert response.json() == {"error": 'model "nope:1b" not found, try pulling it first'}


def test_think_on_model_without_thinking_is_400(client: httpx.Client) -> None:
    """think (true or false) sent to a model without the thinking capability is a 400."""
    for think in (True, False):
        response = client.post("/api/chat", json=chat_body("smollm2:135m", think=think))
        assert response.status_code == 400
        assert response.json() == {"error": '"smollm2:135m" does not support thinking'}


def test_think_true_adds_thinking_that_counts_as_tokens(client: httpx.Client) -> None:
    """think: true on a thinking model adds message.thinking, counted in eval_count."""
    reply = client.post("/api/chat", json=chat_body(think=True)).json()
    thinking, content = reply["message"]["thinking"], reply["message"]["content"]
    assert 40 <= len(thinking.split()) <= 130
    assert reply["eval_count"] == -(-len(thinking) // 4) + -(-len(content) // 4)
    no_think = client.post("/api/chat", json=chat_body(think=False)).json()
    assert "thinking" not in no_think["message"]


def test_bad_bodies_are_400(client: httpx.Client) -> None:
    """Invalid JSON, a missing model and a bad keep_alive answer 400 with an error."""
    bad_json = client.post("/api/chat", content=b"{not json", headers={"content-type": "x"})
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    assert client.post("/api/chat", json={"messages": USER}).status_code == 400
    assert client.post("/api/chat", json=chat_body(keep_alive="soon")).status_code == 400
    assert client.get("/api/nothing").status_code == 404


def test_small_num_predict_truncates(client: httpx.Client) -> None:
    """A num_predict below the content's tokens cuts it: done_reason length, invalid JSON."""
    reply = client.post(
        "/api/chat", json=chat_body(format=SCHEMA, options={"num_predict": 12})
    ).json()
    assert reply["done_reason"] == "length"
    assert reply["eval_count"] <= 12
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply["message"]["content"])
    thinking = client.post(
        "/api/chat", json=chat_body(format=SCHEMA, think=True, options={"num_predict": 30})
    ).json()
    assert thinking["done_reason"] == "length" and thinking["eval_count"] <= 30


# --------------------------------------------------------------------------- residency and VRAM


def test_empty_messages_load_and_keep_alive_zero_unloads(client: httpx.Client) -> None:
    """Empty messages load the model (done_reason load); with keep_alive 0 they unload it."""
    loaded = client.post("/api/chat", json={"model": "qwen3:8b", "messages": []}).json()
    assert loaded["done_reason"] == "load" and loaded["done"] is True
    assert loaded["message"] == {"role": "assistant", "content": ""}
    ps = resident(client)["qwen3:8b"]
    assert ps["size"] == 5_225_400_000 + kv_cache_bytes(4096, 4) == ps["size_vram"]
    assert ps["details"]["parameter_size"] == "8.2B" and ps["expires_at"].endswith("Z")
    unloaded = client.post(
        "/api/chat", json={"model": "qwen3:8b", "messages": [], "keep_alive": 0}
    ).json()
    assert unloaded["done_reason"] == "unload"
    assert resident(client) == {}


def test_chat_with_keep_alive_zero_unloads_after_answering(
    client: httpx.Client, fake: FakeOllama
) -> None:
    """A chat with keep_alive 0 is answered and the model is gone when the reply arrives."""
    assert client.post("/api/chat", json=chat_body(keep_alive=0)).status_code == 200
    assert resident(client) == {}
    assert [e.kind for e in fake.stats().events] == ["load", "unload"]


def test_keep_alive_durations(client: httpx.Client) -> None:
    """keep_alive -1 keeps a model forever; a short duration expires on the real clock."""
    client.post("/api/chat", json={"model": "qwen3:8b", "messages": [], "keep_alive": "-1"})
    assert resident(client)["qwen3:8b"]["expires_at"] > "2200"
    client.post("/api/chat", json={"model": "qwen3:0.6b", "messages": [], "keep_alive": "1ms"})
    wait_until(lambda: "qwen3:0.6b" not in resident(client))
    assert set(resident(client)) == {"qwen3:8b"}


def test_idle_models_are_evicted_least_recently_used_first() -> None:
    """Loading past the VRAM budget evicts the least recently used idle model."""
    models = tuple(FakeModel(name, 3 * 2**30) for name in ("a:1", "b:1", "c:1"))
    config = FakeConfig(models=models, vram_bytes=8 * 2**30)
    with serve(config) as (fake, client):
        for name in ("a:1", "b:1"):
            client.post("/api/chat", json={"model": name, "messages": []})
        client.post("/api/chat", json=chat_body("a:1"))
        client.post("/api/chat", json={"model": "c:1", "messages": []})
        assert set(resident(client)) == {"a:1", "c:1"}
        stats = fake.stats()
        assert [(e.kind, e.model) for e in stats.events][-2:] == [("evict", "b:1"), ("load", "c:1")]
        assert stats.peak_vram_bytes <= 8 * 2**30


def test_too_big_model_is_partially_offloaded(fake: FakeOllama, client: httpx.Client) -> None:
    """A model bigger than free VRAM evicts idle ones and loads with size_vram < size."""
    for name in ("qwen3:8b", "qwen3:0.6b", "qwen3:32b"):
        assert client.post("/api/chat", json=chat_body(name)).status_code == 200
    ps = resident(client)
    assert set(ps) == {"qwen3:32b"}
    assert ps["qwen3:32b"]["size_vram"] == 12 * 2**30 < ps["qwen3:32b"]["size"]
    stats = fake.stats()
    assert stats.peak_vram_bytes <= 12 * 2**30
    assert stats.vram_bytes_now == 12 * 2**30 and stats.resident == ("qwen3:32b",)
    assert sorted(e.model for e in stats.events if e.kind == "evict") == ["qwen3:0.6b", "qwen3:8b"]


def test_num_gpu_zero_keeps_the_model_off_the_gpu(client: httpx.Client) -> None:
    """options.num_gpu 0 loads the model with size_vram 0."""
    client.post("/api/chat", json=chat_body(options={"num_gpu": 0}))
    assert resident(client)["qwen3:8b"]["size_vram"] == 0


def test_changed_num_ctx_forces_a_reload(fake: FakeOllama, client: httpx.Client) -> None:
    """Same runner options reuse the model; a different num_ctx reloads it."""
    for num_ctx in (4096, 4096, 8192):
        client.post("/api/chat", json=chat_body(options={"num_ctx": num_ctx}))
    assert fake.stats().loads == {"qwen3:8b": 2}
    ps = resident(client)["qwen3:8b"]
    assert ps["context_length"] == 8192
    assert ps["size"] == 5_225_400_000 + kv_cache_bytes(8192, 4)


def test_evict_makes_the_model_non_resident(fake: FakeOllama, client: httpx.Client) -> None:
    """evict() drops the model; the next chat loads it again."""
    client.post("/api/chat", json=chat_body())
    fake.evict("qwen3:8b")
    assert resident(client) == {}
    client.post("/api/chat", json=chat_body())
    assert fake.stats().loads == {"qwen3:8b": 2}


# --------------------------------------------------------------------------- slots and queue


def test_full_queue_answers_503() -> None:
    """With one slot busy and max_queue 0, another request is refused with 503 at once."""
    config = FakeConfig(time_scale=1.0, tokens_per_s=1.0, load_s=0, num_parallel=1, max_queue=0)
    errors: list[BaseException] = []
    with serve(config) as (fake, client):

        def slow() -> None:
            with httpx.Client(base_url=fake.url, timeout=30) as own:
                try:
                    own.post("/api/chat", json=chat_body())
                except httpx.HTTPError as exc:  # the fake stops under it
                    errors.append(exc)

        worker = threading.Thread(target=slow)
        worker.start()
        wait_until(lambda: "qwen3:8b" in resident(client))  # it holds the only slot
        response = client.post("/api/chat", json=chat_body())
        assert response.status_code == 503
        assert response.json()["error"].startswith("server busy")
        fake.stop()
        worker.join(10)
    assert not worker.is_alive() and len(errors) == 1
    assert fake.stats().status_counts[503] == 1


def test_sequential_requests_never_see_a_busy_slot() -> None:
    """A slot is free again when its reply arrives, so back-to-back requests never get 503."""
    with serve(FakeConfig(num_parallel=1, max_queue=0)) as (_, client):
        codes = {client.post("/api/chat", json=chat_body()).status_code for _ in range(20)}
    assert codes == {200}


def test_concurrent_requests_within_slots_and_queue_succeed() -> None:
    """Requests beyond the slots wait in the queue and all get answers."""
    config = FakeConfig(num_parallel=2, max_queue=16)
    codes: list[int] = []
    with serve(config) as (fake, _):

        def one() -> None:
            with httpx.Client(base_url=fake.url, timeout=10) as own:
                codes.append(own.post("/api/chat", json=chat_body()).status_code)

        workers = [threading.Thread(target=one) for _ in range(12)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(10)
        stats = fake.stats()
    assert codes == [200] * 12
    assert stats.chat_requests == 12 and stats.loads == {"qwen3:8b": 1}
    assert 0 <= stats.busy_fraction <= 1 and set(stats.busy_fraction_by_model) == {"qwen3:8b"}
    assert stats.tokens_generated > 0


# --------------------------------------------------------------------------- faults


def with_fault(name: str, **config: Any) -> FakeConfig:
    return FakeConfig(faults=FaultRates(**{name: 1.0}), **config)


def test_fault_error_500_crashes_the_runner() -> None:
    """error_500 answers 500 'llama runner process has terminated' and unloads the model."""
    with serve(with_fault("error_500")) as (fake, client):
        response = client.post("/api/chat", json=chat_body())
        assert response.status_code == 500
        assert response.json() == {"error": "llama runner process has terminated: exit status 2"}
        assert resident(client) == {}
        assert fake.stats().faults_injected["error_500"] == 1


def test_fault_busy_503() -> None:
    """busy_503 answers 503 'server busy'."""
    with serve(with_fault("busy_503")) as (fake, client):
        response = client.post("/api/chat", json=chat_body())
        assert response.status_code == 503
        assert response.json()["error"] == (
            "server busy, please try again.  maximum pending requests exceeded"
        )
        assert fake.stats().faults_injected["busy_503"] == 1


def test_fault_drop_closes_without_a_response() -> None:
    """drop closes the connection before any response byte."""
    with serve(with_fault("drop")) as (fake, client):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post("/api/chat", json=chat_body())
        assert fake.stats().faults_injected["drop"] == 1
        assert client.get("/api/version").status_code == 200


def test_fault_stall_hangs_until_the_client_gives_up() -> None:
    """stall never answers: the client times out, and the fake still serves others."""
    with serve(with_fault("stall")) as (fake, client):
        with pytest.raises(httpx.ReadTimeout):
            client.post("/api/chat", json=chat_body(), timeout=0.3)
        assert fake.stats().faults_injected["stall"] == 1
        assert client.get("/api/tags").status_code == 200


def test_stop_unblocks_a_stalled_request() -> None:
    """stop() ends a stalled handler at once; its client sees the connection close."""
    errors: list[BaseException] = []
    with serve(with_fault("stall")) as (fake, _):

        def stalled() -> None:
            with httpx.Client(base_url=fake.url, timeout=60) as own:
                try:
                    own.post("/api/chat", json=chat_body())
                except httpx.HTTPError as exc:
                    errors.append(exc)

        worker = threading.Thread(target=stalled)
        worker.start()
        wait_until(lambda: fake.stats().faults_injected["stall"] == 1)
        fake.stop()
        worker.join(10)
    assert not worker.is_alive()
    assert len(errors) == 1 and not isinstance(errors[0], httpx.TimeoutException)


def test_fault_truncate_cuts_mid_json() -> None:
    """truncate cuts the content mid-JSON and answers done_reason length."""
    with serve(with_fault("truncate")) as (_, client):
        reply = client.post("/api/chat", json=chat_body(format=SCHEMA)).json()
    assert reply["done_reason"] == "length"
    assert reply["message"]["content"].startswith('{"samples": [')
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply["message"]["content"])


def test_fault_fenced_wraps_the_json() -> None:
    """fenced wraps valid JSON content in a ```json fence."""
    with serve(with_fault("fenced")) as (_, client):
        content = client.post("/api/chat", json=chat_body(format=SCHEMA)).json()["message"][
            "content"
        ]
    assert content.startswith("```json\n") and content.endswith("\n```")
    json.loads(content.removeprefix("```json\n").removesuffix("\n```"))


def test_fault_think_in_content_prefixes_a_think_block() -> None:
    """think_in_content puts <think>…</think> before the JSON content."""
    with serve(with_fault("think_in_content")) as (_, client):
        content = client.post("/api/chat", json=chat_body(format=SCHEMA)).json()["message"][
            "content"
        ]
    assert content.startswith("<think>")
    think, _, rest = content.partition("</think>\n")
    assert len(think) > len("<think>")
    json.loads(rest)


def test_fault_invalid_items_spoils_half_the_items() -> None:
    """invalid_items makes about half the items drop a required key or leave their range."""
    with serve(with_fault("invalid_items")) as (fake, client):
        reply = client.post("/api/chat", json=chat_body(format=samples_schema(6))).json()
        assert fake.stats().faults_injected["invalid_items"] == 1
    samples = json.loads(reply["message"]["content"])["samples"]

    def valid(item: dict[str, Any]) -> bool:
        return {"q", "n"} <= set(item) and 1 <= item["n"] <= 5

    assert len(samples) == 6 and sum(not valid(s) for s in samples) == 3


def test_fault_duplicate_repeats_the_previous_content() -> None:
    """duplicate answers exactly the previous content generated for the same format."""
    with serve(with_fault("duplicate")) as (fake, client):
        first, second = (
            client.post("/api/chat", json=chat_body(format=SCHEMA)).json()["message"]["content"]
            for _ in range(2)
        )
        other = client.post("/api/chat", json=chat_body(format=samples_schema(2))).json()
        assert fake.stats().faults_injected["duplicate"] == 1
    assert first == second != other["message"]["content"]


def test_set_faults_turns_faults_on_and_off(fake: FakeOllama, client: httpx.Client) -> None:
    """set_faults changes the rates for the following requests."""
    fake.set_faults(FaultRates(busy_503=1.0))
    assert client.post("/api/chat", json=chat_body()).status_code == 503
    fake.set_faults(FaultRates())
    assert client.post("/api/chat", json=chat_body()).status_code == 200


def test_fault_rates_must_be_probabilities() -> None:
    """A fault rate outside [0, 1] is refused."""
    with pytest.raises(ValueError):
        FaultRates(drop=1.5)
    assert FaultRates.uniform(0.25).duplicate == 0.25


# --------------------------------------------------------------------------- up and down


def test_go_down_refuses_connections_and_come_up_serves_again(
    fake: FakeOllama, client: httpx.Client
) -> None:
    """go_down refuses new connections (ConnectError); come_up serves again on the same URL."""
    url = fake.url
    assert client.get("/api/version").status_code == 200
    fake.go_down()
    with pytest.raises(httpx.ConnectError):
        client.get("/api/version")
    fake.come_up()
    assert fake.url == url
    assert client.get("/api/version").json()["version"]


def test_go_down_forgets_resident_models(fake: FakeOllama, client: httpx.Client) -> None:
    """A fake that went down comes back with nothing loaded, like a restarted Ollama."""
    client.post("/api/chat", json=chat_body())
    fake.go_down()
    fake.come_up()
    assert resident(client) == {}
    client.post("/api/chat", json=chat_body())
    assert fake.stats().loads == {"qwen3:8b": 2}


def test_stop_is_idempotent() -> None:
    """stop() twice, or after go_down, is harmless."""
    fake = FakeOllama()
    fake.start()
    fake.go_down()
    fake.stop()
    fake.stop()


# --------------------------------------------------------------------------- other endpoints


def test_pull_streams_progress(client: httpx.Client) -> None:
    """Pulling a known model streams manifest, downloading progress and success lines."""
    with client.stream("POST", "/api/pull", json={"model": "qwen3:8b"}) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    downloads = [line for line in lines if line["status"].startswith("downloading")]
    assert len(downloads) >= 2
    assert all({"digest", "total", "completed"} <= set(d) for d in downloads)
    assert any(d["completed"] == d["total"] == 5_225_400_000 for d in downloads)


def test_pull_of_unknown_model_ends_with_an_error_line(client: httpx.Client) -> None:
    """An unknown model streams HTTP 200 then ends with an {"error": ...} line."""
    with client.stream("POST", "/api/pull", json={"name": "nope:1b"}) as response:
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert lines[-1] == {"error": "pull model manifest: file does not exist"}
    blocking = client.post("/api/pull", json={"model": "nope:1b", "stream": False})
    assert blocking.status_code == 500


def test_tags_show_and_version(client: httpx.Client) -> None:
    """/api/tags lists the models, /api/show their capabilities and context, / says running."""
    tags = client.get("/api/tags").json()["models"]
    assert {m["name"] for m in tags} >= {"qwen3:8b", "smollm2:135m", "qwen3:30b-a3b"}
    assert all(
        {"name", "model", "size", "modified_at", "digest", "details"} <= set(m) for m in tags
    )
    show = client.post("/api/show", json={"model": "qwen3:8b"}).json()
    assert "thinking" in show["capabilities"]
    assert show["details"]["quantization_level"] == "Q4_K_M"
    assert show["model_info"]["qwen3.context_length"] == 40960
    small = client.post("/api/show", json={"model": "smollm2:135m"}).json()
    assert "thinking" not in small["capabilities"]
    assert client.post("/api/show", json={"model": "nope"}).status_code == 404
    assert client.get("/").text == "Ollama is running"
    assert client.get("/api/version").json()["version"].count(".") == 2


def test_control_endpoints(fake: FakeOllama, client: httpx.Client) -> None:
    """/_fake/stats, /_fake/faults and /_fake/evict control the fake from another process."""
    client.post("/api/chat", json=chat_body())
    stats = client.get("/_fake/stats").json()
    assert stats["chat_requests"] == 1 and stats["loads"] == {"qwen3:8b": 1}
    assert stats["status_counts"] == {"200": 1} and stats["resident"] == ["qwen3:8b"]
    assert stats["events"][0]["kind"] == "load"
    assert client.post("/_fake/faults", json={"busy_503": 1.0}).status_code == 200
    assert client.post("/api/chat", json=chat_body()).status_code == 503
    assert client.post("/_fake/faults", json={"bogus": 1}).status_code == 400
    assert client.post("/_fake/faults", json={}).status_code == 200
    assert client.post("/_fake/evict", json={"model": "qwen3:8b"}).status_code == 200
    assert resident(client) == {}
    assert fake.stats().requests == 3  # two chats and /api/ps; control requests don't count


def test_reset_stats_zeroes_the_counters(fake: FakeOllama, client: httpx.Client) -> None:
    """reset_stats clears counters but keeps what is resident."""
    client.post("/api/chat", json=chat_body())
    fake.reset_stats()
    stats = fake.stats()
    assert stats.requests == 0 and stats.loads == {} and stats.events == ()
    assert stats.resident == ("qwen3:8b",) and stats.peak_vram_bytes == stats.vram_bytes_now
