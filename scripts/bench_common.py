"""What the long-run benchmarks share: a fake Ollama in its own process, the production config's
models and data types as a config file, and the process's resident memory and descriptors.

The fake runs in a child process so that its HTTP threads and its simulated GPU do not share
the service's interpreter (and its GIL): on two cores the service's event loop gets one core
to itself, as it would beside a real Ollama. ``python scripts/bench_common.py fake SPEC``
is that child; SPEC is a JSON object (see :func:`fake_config`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gen_service.config import Config  # noqa: E402
from gen_service.service.supervisor import run_service  # noqa: E402
from gen_service.testing.fake_ollama import (  # noqa: E402
    FakeConfig,
    FakeModel,
    FaultRates,
    kv_cache_bytes,
    serve_forever,
)
from gen_service.testing.fake_ollama._decode import offload_factor  # noqa: E402

GIB = 2**30

# The production config's model roles (systemd/gen-service.toml) at Ollama's sizes, with its
# tokens_per_s (the middle of the memo's ranges). On the 12 GiB card qwen3:30b-a3b spills.
PRODUCTION_MODELS: dict[str, dict[str, Any]] = {
    "qwen3:30b-a3b": {"size_bytes": 18_556_700_000, "tokens_per_s": 32.5, "num_ctx": 16384},
    "qwen3:8b": {"size_bytes": 5_225_400_000, "tokens_per_s": 42.5, "num_ctx": 8192},
    "qwen3:32b": {"size_bytes": 20_201_300_000, "tokens_per_s": 16.0, "num_ctx": 16384},
}

# (data type, model role, batch_size, temperature, think, num_predict): the production config.
PRODUCTION_TYPES: tuple[tuple[str, str, int, float, bool, int], ...] = (
    ("emotional_authenticity", "quality", 15, 0.88, False, 6000),
    ("dramatic_irony", "quality", 10, 0.82, True, 9000),
    ("personality_traits", "volume", 25, 0.90, False, 6000),
    ("tension_building", "quality", 12, 0.85, False, 6000),
    ("relationship_scoring", "volume", 20, 0.88, False, 5000),
)
# The production config's daily targets (systemd/gen-service.toml); in sequential mode, what one
# phase of each type makes.
PRODUCTION_DAILY = {
    "emotional_authenticity": 1500,
    "dramatic_irony": 1200,
    "personality_traits": 2000,
    "tension_building": 800,
    "relationship_scoring": 1000,
}
ROLES = {"quality": "qwen3:30b-a3b", "volume": "qwen3:8b", "judge": "qwen3:32b"}


def fake_config(spec: dict[str, Any]) -> FakeConfig:
    """A FakeConfig from JSON: ``time_scale``, ``load_s``, ``vram_gb``, ``num_parallel``,
    ``seed``, ``max_queue``, ``faults`` (a dict of FaultRates fields); the production models,
    each with its size and tokens/s."""
    thinking = ("completion", "tools", "thinking")
    models = tuple(
        FakeModel(
            name,
            m["size_bytes"],
            capabilities=thinking,
            family="qwen3moe" if "a3b" in name else "qwen3",
            tokens_per_s=m["tokens_per_s"],
        )
        for name, m in PRODUCTION_MODELS.items()
    )
    return FakeConfig(
        models=models,
        vram_bytes=int(spec.get("vram_gb", 12) * GIB),
        num_parallel=int(spec.get("num_parallel", 4)),
        max_queue=int(spec.get("max_queue", 64)),
        time_scale=float(spec.get("time_scale", 0.0)),
        load_s=float(spec.get("load_s", 5.0)),
        seed=int(spec.get("seed", 0)),
        remembered_items=int(spec.get("remembered_items", 50_000)),
        faults=FaultRates(**spec.get("faults", {})),
    )


def alone_rate(model: str, vram_gb: float = 12, slots: int = 4) -> float:
    """The fake's tokens/s for one request of ``model`` alone, loaded by itself into
    ``vram_gb`` (its offload slows it): what its max rate, x slots^0.6, is made of."""
    m = PRODUCTION_MODELS[model]
    size = m["size_bytes"] + kv_cache_bytes(m["num_ctx"], slots)
    return float(m["tokens_per_s"]) * offload_factor(min(size, int(vram_gb * GIB)), size)


@dataclass
class FakeProcess:
    """A fake Ollama serving in a child process."""

    url: str
    proc: subprocess.Popen[str]

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/_fake/stats", timeout=30).json()
        return data

    def reset(self) -> None:
        httpx.post(f"{self.url}/_fake/reset", timeout=30)


@contextmanager
def fake_ollama(spec: dict[str, Any]) -> Iterator[FakeProcess]:
    """Start ``scripts/bench_common.py fake SPEC`` and yield it once it listens."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "fake", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if match is None:
            raise SystemExit(f"the fake Ollama did not start: {line!r}")
        yield FakeProcess(match.group(0), proc)
    finally:
        proc.terminate()
        proc.wait(30)


def service_config(
    folder: Path,
    url: str,
    *,
    targets: dict[str, int],
    daily: dict[str, int] | None = None,
    num_parallel: int = 4,
    schedule: str = "",
    extra_service: str = "",
    batch_sizes: dict[str, int] | None = None,
    types: Sequence[str] | None = None,
    log_level: str = "warning",
) -> Path:
    """A config like systemd/gen-service.toml (models, data types, 12 GiB), pointed at the
        fake, with ``targets`` as each type's total target (and daily target, unless ``daily``
    says otherwise); ``schedule`` is the
        [schedule] tables (default: a sequential phase per type, in the production order)."""
    chosen = [t for t in PRODUCTION_TYPES if types is None or t[0] in types]
    parts = [
        f"""[service]
db = "{folder / "bench.db"}"
prompts_dir = "{ROOT / "prompts"}"
timezone = "UTC"
log_format = "json"
log_level = "{log_level}"
progress = "off"
{extra_service}
[backend]
kind = "ollama"
url = "{url}"
num_parallel = {num_parallel}
request_timeout_s = 900
max_retries = 3
retry_initial_s = 0.05
retry_max_s = 1
keep_alive = "30m"

[gpu]
vram_gb = 12
reserve_gb = 0.5
"""
    ]
    for role, name in ROLES.items():
        m = PRODUCTION_MODELS[name]
        parts.append(f'\n[models.{role}]\nname = "{name}"\nnum_ctx = {m["num_ctx"]}\n')
    for name, role, batch, temperature, think, num_predict in chosen:
        size = (batch_sizes or {}).get(name, batch)
        parts.append(
            f"""
[datatypes.{name}]
model = "{role}"
batch_size = {size}
temperature = {temperature}
think = {"true" if think else "false"}
num_predict = {num_predict}
daily_target = {(daily or targets)[name]}
total_target = {targets[name]}
"""
        )
    if not schedule:
        schedule = '[schedule]\nmode = "sequential"\nbackfill = true\n' + "".join(
            f'\n[[schedule.phases]]\nname = "{t[0]}"\nkind = "generate"\ndatatypes = ["{t[0]}"]\n'
            for t in chosen
        )
    parts.append("\n" + schedule)
    path = folder / "bench.toml"
    path.write_text("".join(parts))
    return path


def run_until_done(cfg: Config) -> None:
    """The service on ``cfg`` until every target is met, on uvloop as in production."""
    anyio.run(
        lambda: run_service(cfg, until_done=True),
        backend="asyncio",
        backend_options={"use_uvloop": True},
    )


def rss_mb() -> float:
    """This process's resident memory (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def load_text() -> str:
    """The machine's load averages, to print beside each figure (2 shared cores)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _serve(spec_json: str) -> None:
    serve_forever(fake_config(json.loads(spec_json)), "127.0.0.1", 0)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "fake":
        _serve(sys.argv[2])
    else:
        raise SystemExit("usage: bench_common.py fake SPEC_JSON")
