"""Shared fixtures: a real fake-Ollama server on 127.0.0.1 and config files that point at it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gen_service.testing.fake_ollama import FakeConfig, FakeOllama

REPO = Path(__file__).resolve().parent.parent
PROMPTS = REPO / "prompts"

ALL_TYPES = (
    "emotional_authenticity",
    "dramatic_irony",
    "personality_traits",
    "tension_building",
    "relationship_scoring",
)


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fake Ollama answering at once (time scale 0), fresh for each test."""
    with FakeOllama(FakeConfig(time_scale=0.0, seed=1)) as server:
        yield server


def config_text(
    *,
    url: str,
    db: Path,
    target: int = 30,
    daily: int | None = None,
    batch_size: int = 5,
    types: tuple[str, ...] = ALL_TYPES,
    kind: str = "ollama",
    num_parallel: int = 4,
    max_retries: int = 3,
    extra_backend: str = "",
    timeout_s: float = 30,
    grace_s: float = 10,
    model_quality: str = "qwen3:30b-a3b",
    model_volume: str = "qwen3:8b",
    num_ctx: int = 8192,
    num_predict: int = 6000,
    few_shot: int | None = None,
) -> str:
    """A sequential config over the given data types, one phase per type."""
    volume = {"personality_traits", "relationship_scoring"}
    daily = target if daily is None else daily
    parts = [
        f"""
[service]
db = "{db}"
prompts_dir = "{PROMPTS}"
timezone = "UTC"
log_format = "json"
shutdown_grace_s = {grace_s}

[backend]
kind = "{kind}"
url = "{url}"
num_parallel = {num_parallel}
request_timeout_s = {timeout_s}
max_retries = {max_retries}
retry_initial_s = 0.01
retry_max_s = 0.05
{extra_backend}

[models.quality]
name = "{model_quality}"
num_ctx = {num_ctx}

[models.volume]
name = "{model_volume}"
num_ctx = {num_ctx}
"""
    ]
    for t in types:
        parts.append(
            f"""
[datatypes.{t}]
model = "{"volume" if t in volume else "quality"}"
batch_size = {batch_size}
temperature = 0.8
think = {"true" if t == "dramatic_irony" else "false"}
num_predict = {num_predict}
daily_target = {daily}
total_target = {target}
"""
            + ("" if few_shot is None else f"few_shot = {few_shot}\n")
        )
    parts.append('\n[schedule]\nmode = "sequential"\nbackfill = true\n')
    for t in types:
        parts.append(
            f'\n[[schedule.phases]]\nname = "{t}"\nkind = "generate"\ndatatypes = ["{t}"]\n'
        )
    return "".join(parts)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config file into tmp_path and return its path."""

    def write(text: str | None = None, name: str = "gen-service.toml", **kwargs: object) -> Path:
        path = tmp_path / name
        if text is None:
            kwargs.setdefault("db", tmp_path / "samples.db")
            kwargs.setdefault("url", "http://127.0.0.1:9")
            text = config_text(**kwargs)  # type: ignore[arg-type]
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    """Async tests run on plain asyncio and on uvloop, the loop the service uses."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    """CLI commands configure structlog globally (level, renderer); undo it after each test so
    capture_logs() in the next one sees every event."""
    yield
    import structlog

    structlog.reset_defaults()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


LLAMA_SERVER_MODEL = "smollm2:135m"


@contextlib.contextmanager
def llama_cpp_server(log_dir: Path, *, n_ctx: int = 2048) -> Iterator[RunningServer]:
    """Start a real ``python -m llama_cpp.server`` serving SmolLM2 as smollm2:135m on
    127.0.0.1; stop it on exit (it may have died already: tests crash it on purpose)."""
    pytest.importorskip("llama_cpp")
    from gen_service.adapters.llamacpp import default_model_path

    port = free_port()
    log_path = log_dir / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_path()),
        "--model_alias",
        LLAMA_SERVER_MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(process, f"http://127.0.0.1:{port}/v1/models", log_path)
            yield RunningServer(f"http://127.0.0.1:{port}/v1", process, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass(frozen=True)
class RunningServer:
    url: str  # the base URL with /v1
    process: subprocess.Popen[bytes]
    log_path: Path


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``python -m llama_cpp.server`` serving SmolLM2 as smollm2:135m on 127.0.0.1,
    shared by the openai tests and the backend contract; yields its base URL with /v1."""
    with llama_cpp_server(tmp_path_factory.mktemp("llama-server")) as server:
        yield server.url


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited {process.returncode}:\n{log_path.read_text()}"
                )
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"llama_cpp.server did not answer {url} within 60 s:\n{log_path.read_text()}")
