"""The fake Ollama's throughput limit (SPEC §9.2), over real HTTP on 127.0.0.1: requests share a
model's decode rate as tokens_per_s x k^0.6, partial offload slows it, and the stats account
for decoded tokens against the limit.

Durations are asserted on what the fake reports (its simulated clock), and wall-clock time
only where the fake cannot possibly be faster than the formula, so a busy test machine makes
these tests slower, never flaky.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from gen_service.testing import FakeConfig, FakeModel, FakeOllama

TOKENS = 40  # per answer: num_predict cuts the (longer) content to exactly this many tokens
PROMPT = [{"role": "user", "content": "Write a line."}]
LONG = {"type": "object", "properties": {"t": {"type": "string", "minLength": 400}}}
NS = 1e9


def body(model: str = "a:1", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": PROMPT,
        "format": LONG,
        "stream": False,
        "options": {"num_predict": TOKENS},
        **extra,
    }


def models(**rates: float | None) -> tuple[FakeModel, ...]:
    return tuple(
        FakeModel(f"{name}:1", 2 * 2**30, tokens_per_s=rate) for name, rate in rates.items()
    )


@contextmanager
def serve(**config: Any) -> Iterator[tuple[FakeOllama, httpx.Client]]:
    defaults: dict[str, Any] = {"models": models(a=None), "load_s": 0.0, "tokens_per_s": 100.0}
    with (
        FakeOllama(FakeConfig(**{**defaults, **config})) as fake,
        httpx.Client(base_url=fake.url, timeout=30) as client,
    ):
        yield fake, client


def parallel(fake: FakeOllama, bodies: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Post ``bodies`` at once, one thread each; (the replies, wall seconds until the last)."""
    replies: list[dict[str, Any]] = [{} for _ in bodies]
    gate = threading.Barrier(len(bodies) + 1)

    def one(i: int) -> None:
        with httpx.Client(base_url=fake.url, timeout=30) as own:
            own.get("/api/version")  # connect before the gate
            gate.wait()
            replies[i] = own.post("/api/chat", json=bodies[i]).json()

    workers = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for worker in workers:
        worker.start()
    gate.wait()
    started = time.monotonic()
    for worker in workers:
        worker.join(30)
    return replies, time.monotonic() - started


def shared_s(tokens: int, alone: float, k: int) -> float:
    """Simulated seconds for k requests of ``tokens`` each, started together."""
    return tokens / (alone * k**0.6 / k)


# --------------------------------------------------------------------------- the shared rate


@pytest.mark.parametrize("k", [1, 2, 4])
def test_k_parallel_requests_share_the_rate(k: int) -> None:
    """k requests decoding together each get tokens_per_s x k^0.6 / k: they finish in about
    the formula's time, never sooner."""
    scale = 1.0
    expected = shared_s(TOKENS, 100.0, k)  # 0.4 s alone, 0.53 s for 2, 0.70 s for 4
    with serve(time_scale=scale) as (fake, client):
        client.post("/api/chat", json={"model": "a:1", "messages": []})  # loaded beforehand
        replies, wall = parallel(fake, [body() for _ in range(k)])
    assert all(r["eval_count"] == TOKENS for r in replies)
    durations = [r["eval_duration"] / NS for r in replies]
    assert max(durations) <= expected * 1.001  # nobody shares with more than k-1 others
    assert sum(durations) / k >= expected * 0.8  # the starts were close together
    assert wall >= expected * scale * 0.99  # k x TOKENS at most tokens_per_s x k^0.6
    assert k == 1 or wall < shared_s(TOKENS, 100.0, 1) * k * scale  # faster than one by one


def test_a_finishing_request_speeds_up_the_others() -> None:
    """When a short request finishes, the long one gets the whole rate for its remainder."""
    with serve(time_scale=1.0) as (fake, client):
        client.post("/api/chat", json={"model": "a:1", "messages": []})
        short = body(options={"num_predict": 10})
        long = body(options={"num_predict": 40})
        replies, _ = parallel(fake, [short, long])
    shared = 100.0 * 2**0.6 / 2  # per request while both decode
    # Both decode 10 tokens at the shared rate, then the long one does 30 alone.
    expected_long = 10 / shared + 30 / 100.0
    assert replies[1]["eval_duration"] / NS == pytest.approx(expected_long, rel=0.03)
    assert replies[0]["eval_duration"] / NS <= 10 / shared * 1.001


def test_streamed_answers_decode_at_the_shared_rate() -> None:
    """A streamed answer's chunks come as it decodes, and its final line reports the time."""
    with serve(time_scale=1.0) as (_, client):
        client.post("/api/chat", json={"model": "a:1", "messages": []})
        started = time.monotonic()
        with client.stream("POST", "/api/chat", json=body(stream=True)) as response:
            lines = [line for line in response.iter_lines() if line]
        wall = time.monotonic() - started
    final = httpx.Response(200, content=lines[-1]).json()
    assert len(lines) > 2 and final["eval_count"] == TOKENS
    assert final["eval_duration"] / NS == pytest.approx(TOKENS / 100.0, rel=0.01)
    assert wall >= TOKENS / 100.0 * 0.99


def test_models_decode_at_their_own_rate() -> None:
    """A model's own tokens_per_s wins over the global default."""
    with serve(models=models(a=None, b=25.0), time_scale=0.0) as (_, client):
        default = client.post("/api/chat", json=body("a:1")).json()
        own = client.post("/api/chat", json=body("b:1")).json()
    assert default["eval_duration"] / NS == pytest.approx(TOKENS / 100.0, rel=0.01)
    assert own["eval_duration"] / NS == pytest.approx(TOKENS / 25.0, rel=0.01)


def test_partial_offload_slows_decoding() -> None:
    """A model with a share g of itself in VRAM decodes at tokens_per_s x (0.1 + 0.9 g)."""
    big = FakeModel("big:1", 6 * 2**30)
    with serve(models=(big,), vram_bytes=4 * 2**30, time_scale=0.0) as (_, client):
        reply = client.post("/api/chat", json=body("big:1")).json()
        ps = client.get("/api/ps").json()["models"][0]
        cpu_only_body = body("big:1", options={"num_predict": TOKENS, "num_gpu": 0})
        cpu_only = client.post("/api/chat", json=cpu_only_body).json()
    share = ps["size_vram"] / ps["size"]
    assert 0 < share < 1
    assert reply["eval_duration"] / NS == pytest.approx(TOKENS / (100 * (0.1 + 0.9 * share)))
    assert cpu_only["eval_duration"] / NS == pytest.approx(TOKENS / 10.0)


def test_time_scale_zero_answers_at_once_and_counts_tokens() -> None:
    """At time scale 0 nothing waits, tokens still count per model, and there is no limit."""
    with serve(models=models(a=None, b=None), time_scale=0.0) as (fake, client):
        started = time.monotonic()
        for name in ("a:1", "a:1", "b:1"):
            client.post("/api/chat", json=body(name))
        assert time.monotonic() - started < 5  # 1.2 simulated seconds, not waited
        stats = fake.stats()
    assert stats.tokens_by_model == {"a:1": 2 * TOKENS, "b:1": TOKENS}
    assert stats.tokens_generated == 3 * TOKENS
    assert stats.limit_tokens == 0 and stats.limit_window_s == 0


def test_model_rate_must_be_positive() -> None:
    """A model's tokens_per_s of zero or less is refused."""
    with pytest.raises(ValueError):
        FakeModel("x:1", 1, tokens_per_s=0)


# --------------------------------------------------------------------------- the limit


def test_saturated_slots_decode_at_the_limit() -> None:
    """All num_parallel slots decoding from the start of a window use nearly all of the limit,
    and never more."""
    with serve(time_scale=1.0, num_parallel=3) as (fake, client):
        client.post("/api/chat", json={"model": "a:1", "messages": []})
        fake.reset_stats()
        replies, _ = parallel(fake, [body() for _ in range(3)])
        stats = fake.stats()
    decoded = sum(r["eval_count"] for r in replies)
    assert stats.tokens_generated == decoded == stats.tokens_by_model["a:1"]
    assert stats.limit_tokens_by_model.keys() == {"a:1"}
    assert 0.6 * stats.limit_tokens <= decoded <= stats.limit_tokens


def test_limit_integrates_the_owner_rate_over_time() -> None:
    """limit_tokens is the owner's max rate (tokens_per_s x slots^0.6) integrated over the
    window; a swap hands the GPU to the new model, idle time still counts, reset starts over."""
    scale = 0.5
    slots = 2
    rate = {"a:1": 100.0 * slots**0.6, "b:1": 40.0 * slots**0.6}
    with serve(models=models(a=None, b=40.0), time_scale=scale, num_parallel=slots) as (
        fake,
        client,
    ):
        a_sent = time.monotonic()
        a_reply = client.post("/api/chat", json=body("a:1")).json()
        a_done = time.monotonic()
        time.sleep(0.2)  # the GPU idles: capacity lost, still in the limit
        b_sent = time.monotonic()
        b_reply = client.post("/api/chat", json=body("b:1")).json()
        b_done = time.monotonic()
        stats = fake.stats()
        read = time.monotonic()
        fake.reset_stats()
        after_reset = fake.stats()
    limit = stats.limit_tokens_by_model
    assert rate["a:1"] * (b_sent - a_done) / scale <= limit["a:1"]
    assert limit["a:1"] <= rate["a:1"] * (b_done - a_sent) / scale
    assert rate["b:1"] * b_reply["eval_duration"] / NS <= limit["b:1"]  # owned while decoding
    assert limit["b:1"] <= rate["b:1"] * (read - b_sent) / scale
    assert stats.limit_tokens == pytest.approx(sum(limit.values()))
    window = limit["a:1"] / rate["a:1"] + limit["b:1"] / rate["b:1"]
    assert stats.limit_window_s == pytest.approx(window)
    assert stats.tokens_by_model == {"a:1": a_reply["eval_count"], "b:1": b_reply["eval_count"]}
    assert stats.tokens_generated < stats.limit_tokens
    assert after_reset.limit_tokens < stats.limit_tokens / 10 and after_reset.tokens_generated == 0


def test_an_unload_does_not_take_the_gpu() -> None:
    """keep_alive 0 without messages unloads a model without making it the GPU's owner."""
    with serve(models=models(a=None, b=None), time_scale=0.01) as (fake, client):
        client.post("/api/chat", json=body("a:1"))
        client.post("/api/chat", json={"model": "b:1", "messages": [], "keep_alive": 0})
        time.sleep(0.05)
        stats = fake.stats()
    assert set(stats.limit_tokens_by_model) == {"a:1"}


def test_stats_over_http_carry_the_throughput_figures() -> None:
    """/_fake/stats reports decoded tokens per model and the limit, /_fake/reset clears them."""
    with serve(time_scale=0.01) as (_, client):
        client.post("/api/chat", json=body())
        stats = client.get("/_fake/stats").json()
        assert stats["tokens_by_model"] == {"a:1": TOKENS}
        assert stats["limit_tokens"] > 0 and stats["limit_tokens_by_model"].keys() == {"a:1"}
        assert stats["limit_window_s"] > 0
        client.post("/_fake/reset")
        assert client.get("/_fake/stats").json()["tokens_by_model"] == {}


# --------------------------------------------------------------------------- the prompt cache


def prompt_body(prefix: str, tail: str, model: str = "a:1") -> dict[str, Any]:
    return {
        **body(model),
        "messages": [
            {"role": "system", "content": prefix},
            {"role": "user", "content": tail},
        ],
    }


def prompt_s(reply: dict[str, Any]) -> float:
    return float(reply["prompt_eval_duration"]) / NS


def test_a_repeated_prefix_is_evaluated_once_per_slot() -> None:
    """A request whose prompt starts like the slot's last one evaluates only the rest (as
    Ollama's per-slot prompt cache does); prompt_eval_count still counts the whole prompt."""
    static = "Write carefully. " * 400  # ~1,700 tokens shared by every request
    with serve(time_scale=0.0) as (_, client):
        first = client.post("/api/chat", json=prompt_body(static, "Brief one.")).json()
        second = client.post("/api/chat", json=prompt_body(static, "Brief two.")).json()
        other = client.post("/api/chat", json=prompt_body("Another text. " * 400, "x")).json()
    assert second["prompt_eval_count"] == first["prompt_eval_count"]
    assert prompt_s(second) < prompt_s(first) / 50
    assert prompt_s(other) > prompt_s(first) / 2  # nothing in common: evaluated whole


def test_an_unloaded_model_forgets_its_prompt_cache() -> None:
    """Unloading a model drops its slots' caches: the next request evaluates everything."""
    static = "Write carefully. " * 400
    with serve(time_scale=0.0) as (_, client):
        first = client.post("/api/chat", json=prompt_body(static, "one")).json()
        client.post("/api/chat", json={"model": "a:1", "messages": [], "keep_alive": 0})
        again = client.post("/api/chat", json=prompt_body(static, "one")).json()
    assert prompt_s(again) == pytest.approx(prompt_s(first))


def test_busy_slots_do_not_share_their_cache() -> None:
    """Requests in flight hold their cache slots: k requests at once with one prefix each
    evaluate it in full, as k slots of a fresh runner would."""
    static = "Write carefully. " * 400
    with serve(time_scale=1.0, num_parallel=2, tokens_per_s=400.0) as (fake, client):
        client.post("/api/chat", json={"model": "a:1", "messages": []})
        replies, _ = parallel(fake, [prompt_body(static, f"brief {i}") for i in range(2)])
    assert all(prompt_s(r) > 0.1 for r in replies)  # ~1,700 tokens at 8,000/s each
