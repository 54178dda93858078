#!/usr/bin/env python3
"""Benchmarks for SPEC §9 targets. Results go in BENCHMARKS.md with the command that made them.

    .venv/bin/python scripts/bench.py overhead [--samples 3000]   # §9.1 pipeline vs bare httpx
        [--check-workers 1] [--rounds 1]
    .venv/bin/python scripts/bench.py utilization [--runs 3]      # §9.2 GPU limit and waste
    .venv/bin/python scripts/bench.py memory [--samples 200000]   # §9.3 RSS over a long run
    .venv/bin/python scripts/bench.py dedup [--indexed 100000]    # §9.4 near-duplicate check
    .venv/bin/python scripts/bench.py status [--rows 1000000]     # §9.5 status on 1M samples
    .venv/bin/python scripts/bench.py soak [--days 7]             # a simulated week

All run against real components: the fake Ollama in its own process (gen-service
fake-ollama, or scripts/bench_common.py) and real SQLite files in a temporary folder. The
utilization, memory, dedup and soak benchmarks live in scripts/bench_gpu.py, bench_memory.py,
bench_dedup.py and bench_soak.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gen_service.adapters.prompt_files import load_prompt_library  # noqa: E402
from gen_service.adapters.store import Store  # noqa: E402
from gen_service.config import load_config  # noqa: E402
from gen_service.domain.checking import item_template  # noqa: E402
from gen_service.domain.datatypes import REGISTRY  # noqa: E402
from gen_service.logs import configure_logging  # noqa: E402
from gen_service.service.status import dashboard  # noqa: E402
from gen_service.service.supervisor import run_service  # noqa: E402

DATATYPE = "personality_traits"
BATCH = 25
PARALLEL = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_fake(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gen_service",
            "fake-ollama",
            "--port",
            str(port),
            "--time-scale",
            "0",
            "--num-parallel",
            str(PARALLEL),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the fake Ollama did not start")


def _config(folder: Path, url: str, samples: int, check_workers: int = 0) -> Path:
    text = f"""
[service]
db = "{folder / "bench.db"}"
check_workers = {check_workers}
prompts_dir = "{ROOT / "prompts"}"
timezone = "UTC"
log_format = "json"
log_level = "warning"

[backend]
kind = "ollama"
url = "{url}"
num_parallel = {PARALLEL}
request_timeout_s = 60

[models.volume]
name = "qwen3:8b"
num_ctx = 8192

[datatypes.{DATATYPE}]
model = "volume"
batch_size = {BATCH}
temperature = 0.9
num_predict = 20000
daily_target = 0
total_target = {samples}

[schedule]
mode = "sequential"

[[schedule.phases]]
name = "bench"
kind = "generate"
datatypes = ["{DATATYPE}"]
"""
    path = folder / "bench.toml"
    path.write_text(text)
    return path


def _requests(config: Path, count: int) -> list[dict[str, Any]]:
    """``count`` request bodies as the pipeline sends them for the bench config: briefs sampled
    by the data type, the prompt rendered for them with the few-shot rotation, the per-brief
    pinned request schema, the config's options. Built before any timing starts."""
    cfg = load_config(config)
    dtc = cfg.datatypes[DATATYPE]
    model = cfg.models[dtc.model]
    spec = REGISTRY[DATATYPE]
    library = load_prompt_library(ROOT / "prompts", [DATATYPE])
    template = item_template(
        spec,
        max_string_chars=dtc.max_string_chars,
        min_words=dtc.min_words,
        grammar_cap=dtc.max_string_chars if model.grammar_safe else None,
        letters=model.text_charset == "letters",
    )
    rng = random.Random(0)
    bodies = []
    for number in range(count):
        contexts = spec.sample_contexts(rng, BATCH, facets=library.facets)
        seed = rng.randrange(2**31)
        prompt = library.render(
            spec,
            batch_size=BATCH,
            contexts=contexts,
            rng=random.Random(seed),
            examples=dtc.few_shot,
            rotation=number // 24,
        )
        bodies.append(
            {
                "model": model.name,
                "messages": [
                    {"role": "system", "content": prompt.system},
                    {"role": "user", "content": prompt.user},
                ],
                "stream": False,
                "options": {
                    "num_ctx": model.num_ctx,
                    "temperature": dtc.temperature,
                    "num_predict": dtc.num_predict,
                    "seed": seed,
                },
                "format": template.request_schema(list(contexts)),
                "think": dtc.think,
            }
        )
        if cfg.backend.keep_alive is not None:
            bodies[-1]["keep_alive"] = cfg.backend.keep_alive
    return bodies


async def _bare_loop(url: str, samples: int, bodies: list[dict[str, Any]]) -> float:
    """Items per second of a bare httpx loop posting ``bodies`` in turn to the fake."""
    done = 0
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await client.post("/api/chat", json=bodies[0])  # load the model, as the service does
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal done, sent
            while done < samples:
                body = bodies[sent % len(bodies)]
                sent += 1
                response = await client.post("/api/chat", json=body)
                items = json.loads(response.json()["message"]["content"])["samples"]
                done += len(items)

        async with anyio.create_task_group() as tg:
            for _ in range(PARALLEL):
                tg.start_soon(worker)
        return done / (time.perf_counter() - started)


def _pipeline(config: Path) -> tuple[float, int, float]:
    """(accepted samples per second, accepted, seconds of start-up) of a whole run. The rate
    counts from the first batch's start to the last batch's end, as the bare loop counts from
    its first request after loading the model; the start-up before (migrations, the index
    load, the backend's health check, the model's load) is returned apart."""
    cfg = load_config(config)
    configure_logging("json", "warning", stream=open("/dev/null", "w"))  # noqa: SIM115
    started = time.time()
    anyio.run(
        lambda: run_service(cfg, until_done=True),
        backend="asyncio",
        backend_options={"use_uvloop": True},
    )
    conn = sqlite3.connect(cfg.service.db)
    accepted = int(conn.execute("SELECT accepted FROM progress").fetchone()[0])
    spans = conn.execute("SELECT created_at, latency_s FROM batches").fetchall()
    conn.close()
    first = min(dt.datetime.fromisoformat(created).timestamp() for created, _ in spans)
    last = max(dt.datetime.fromisoformat(created).timestamp() + lat for created, lat in spans)
    return accepted / (last - first), accepted, first - started


def bench_overhead(samples: int, check_workers: int, rounds: int) -> None:
    port = _free_port()
    fake = _start_fake(port)
    url = f"http://127.0.0.1:{port}"
    uv = {"use_uvloop": True}
    ratios = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            bodies = _requests(_config(folder, url, samples), 96)
            loop = functools.partial(_bare_loop, url, samples)
            for number in range(1, rounds + 1):
                bare = anyio.run(loop, bodies, backend="asyncio", backend_options=uv)
                rates = {}
                for workers in dict.fromkeys((check_workers, 0)):
                    run = folder / f"r{number}w{workers}"
                    run.mkdir()
                    rates[workers] = _pipeline(_config(run, url, samples, workers))
                # For comparison with figures before 2026-11-26: one request posted again and
                # again (the fake then answers one schema; the pipeline never sends that).
                same = anyio.run(loop, bodies[:1], backend="asyncio", backend_options=uv)
                ratios.append(rates[check_workers][0] / bare)
                print(f"round {number}")
                turn = f"the pipeline's {len(bodies)} requests in turn"
                print(f"  bare httpx loop : {bare:8.1f} items/s ({turn})")
                for workers, (rate, accepted, start_s) in rates.items():
                    where = f"{workers} check worker{'s' if workers != 1 else ''}"
                    print(
                        f"  full pipeline   : {rate:8.1f} accepted samples/s ({accepted} accepted,"
                        f" {where}, after {start_s:.1f} s of start-up): ratio {rate / bare:.2f}"
                    )
                print(f"  one request     : {same:8.1f} items/s (one body posted again and again)")
    finally:
        fake.terminate()
        fake.wait()
    print(
        f"ratio with {check_workers} check worker(s): median {statistics.median(ratios):.2f}"
        " (target >= 0.8; issue 10: >= 0.5)"
    )


def bench_status(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "big.db"

        async def create() -> None:
            async with Store.open(db) as store:
                await store.set_targets([(name, "m", 1000, rows) for name in REGISTRY], dt.UTC)

        anyio.run(create)
        conn = sqlite3.connect(db)
        names = list(REGISTRY)
        started = time.perf_counter()
        batch_rows = 25  # a realistic batch size: 40,000 batches for 1M samples
        n_batches = rows // batch_rows
        now = dt.datetime.now(dt.UTC)
        conn.execute("BEGIN")
        for b in range(n_batches):
            name = names[b % len(names)]
            # Spread over the last 60 days, newest last, so the last-hour queries find rows.
            when = now - dt.timedelta(days=60) * (1 - b / n_batches)
            day = when.date().isoformat()
            created = when.isoformat(timespec="milliseconds")
            conn.execute(
                "INSERT INTO batches (run_id, datatype, model, status, attempts, requested,"
                " accepted, created_at, day) VALUES (NULL, ?, 'm', 'ok', 1, ?, ?, ?, ?)",
                (name, batch_rows, batch_rows, created, day),
            )
            batch_id = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.executemany(
                "INSERT INTO samples (batch_id, datatype, status, content_hash, payload,"
                " created_at, day) VALUES (?, ?, 'accepted', ?, '{}', ?, ?)",
                [(batch_id, name, f"{b}-{i}", created, day) for i in range(batch_rows)],
            )
        conn.execute("COMMIT")
        conn.close()
        print(f"filled {rows:,} samples in {time.perf_counter() - started:.1f} s")
        ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        ro.row_factory = sqlite3.Row
        times = []
        for _ in range(20):
            t = time.perf_counter()
            data = dashboard(ro, None, now=dt.datetime.now(dt.UTC), gpu_probe=False)
            times.append(time.perf_counter() - t)
        ro.close()
        assert data["samples_generated"] == rows, data["samples_generated"]
        print(
            f"dashboard() on {rows:,} samples: median {statistics.median(times) * 1000:.1f} ms,"
            f" max {max(times) * 1000:.1f} ms over 20 runs (target < 200 ms)"
        )
        config = Path(tmp) / "gen-service.toml"
        config.write_text('[service]\ndb = "big.db"\n')
        for where in (["--db", str(db)], ["--config", str(config)]):
            cli = []
            for _ in range(5):
                t = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "gen_service", "status", *where, "--json"],
                    check=True,
                    capture_output=True,
                )
                cli.append(time.perf_counter() - t)
            print(
                f"`gen-service status {where[0]} ... --json` process wall time: median "
                f"{statistics.median(cli) * 1000:.0f} ms, max {max(cli) * 1000:.0f} ms over 5 "
                "runs (includes Python start-up and imports; target < 200 ms)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("overhead")
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--check-workers", type=int, default=1, help="service.check_workers")
    p.add_argument("--rounds", type=int, default=1)
    p = sub.add_parser("status")
    p.add_argument("--rows", type=int, default=1_000_000)
    _add_long_runs(sub)
    args = parser.parse_args()
    if args.which == "overhead":
        bench_overhead(args.samples, args.check_workers, args.rounds)
    elif args.which == "status":
        bench_status(args.rows)
    else:
        _run_long(args)


def _add_long_runs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The subcommands of scripts/bench_gpu.py, bench_memory.py, bench_dedup.py, bench_soak.py."""
    p = sub.add_parser("utilization", help="§9.2: useful tokens / the fake's limit, and waste")
    p.add_argument("--time-scale", type=float, default=0.02)
    p.add_argument("--share", type=float, default=0.25, help="x the production daily targets")
    p.add_argument("--load-s", type=float, default=5.0, help="simulated seconds per model load")
    p.add_argument("--truncate", type=float, default=0.0, help="the fake's truncate fault rate")
    p.add_argument("--runs", type=int, default=3)
    p = sub.add_parser("memory", help="§9.3: RSS growth over a long run at time scale 0")
    p.add_argument("--samples", type=int, default=200_000)
    p.add_argument("--warmup", type=int, default=20_000)
    p.add_argument("--every", type=int, default=20_000)
    p = sub.add_parser("dedup", help="§9.4: the near-duplicate check with 100,000 indexed")
    p.add_argument("--indexed", type=int, default=100_000)
    p.add_argument("--checks", type=int, default=2_000)
    p.add_argument("--rounds", type=int, default=3)
    p = sub.add_parser("soak", help="a simulated week: RSS, descriptors, WAL, database")
    p.add_argument("--days", type=float, default=7)
    p.add_argument("--speed", type=float, default=720, help="simulated seconds per real second")
    p.add_argument("--hold-day", type=int, default=3, help="the day a reader holds a snapshot")
    p.add_argument("--hold-hours", type=float, default=12)


def _run_long(args: argparse.Namespace) -> None:
    if args.which == "utilization":
        from bench_gpu import bench_utilization

        bench_utilization(args.time_scale, args.share, args.load_s, args.runs, args.truncate)
    elif args.which == "memory":
        from bench_memory import bench_memory

        bench_memory(args.samples, args.warmup, args.every)
    elif args.which == "dedup":
        from bench_dedup import bench_dedup

        bench_dedup(args.indexed, args.checks, args.rounds)
    else:
        from bench_soak import bench_soak

        bench_soak(args.days, args.speed, args.hold_day, args.hold_hours)


if __name__ == "__main__":
    main()
