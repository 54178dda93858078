"""``gen-service models pull|list`` against the fake Ollama on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from gen_service.adapters.backend import RunnerOptions
from gen_service.adapters.factory import open_backend
from gen_service.config import load_config
from gen_service.errors import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from gen_service.service.models_cmd import (
    NOT_OLLAMA,
    ModelRow,
    list_models,
    pull_models,
    render_models,
)
from gen_service.testing.fake_ollama import FakeOllama

pytestmark = pytest.mark.anyio

WriteConfig = Callable[..., Path]


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=150, color_system=None), out


async def _pull(path: Path) -> tuple[int, str]:
    cfg = load_config(path, check_prompts=False)
    console, out = _console()
    async with open_backend(cfg) as backend:
        code = await pull_models(cfg, backend, console)
    return code, out.getvalue()


async def test_pull_fetches_each_configured_model_once_with_progress(
    fake_ollama: FakeOllama, write_config: WriteConfig
) -> None:
    """Both configured models are pulled (the 8B once, though two roles could share it), and
    each bar ends at the model's full size from the events' totals."""
    code, text = await _pull(write_config(url=fake_ollama.url))
    assert code == EXIT_OK
    assert text.count("✓ qwen3:30b-a3b pulled") == 1
    assert text.count("✓ qwen3:8b pulled") == 1
    assert "✗" not in text
    # The bar's size is the sum of the layer totals: weights + the small manifest layer.
    assert "17.3/17.3 GiB" in text
    assert "4.9/4.9 GiB" in text


async def test_pull_of_an_unknown_model_fails_with_its_message_and_69(
    fake_ollama: FakeOllama, write_config: WriteConfig
) -> None:
    """A tag Ollama cannot find fails with the server's words; the other model still pulls."""
    code, text = await _pull(write_config(url=fake_ollama.url, model_volume="qwen3:999b"))
    assert code == EXIT_UNAVAILABLE
    assert "✗ qwen3:999b: pulling qwen3:999b failed: pull model manifest: file does not exist" in (
        text
    )
    assert "✓ qwen3:30b-a3b pulled" in text
    assert "1 of 2 models failed to pull" in text


async def test_pull_with_ollama_down_stops_after_the_first_refusal(
    fake_ollama: FakeOllama, write_config: WriteConfig
) -> None:
    """Connection refused: the first model fails with the `ollama serve` hint, the rest are
    not tried, and the exit code is 69."""
    path = write_config(url=fake_ollama.url)
    fake_ollama.go_down()
    code, text = await _pull(path)
    assert code == EXIT_UNAVAILABLE
    assert "✗ qwen3:30b-a3b: cannot connect to Ollama" in text
    assert "`ollama serve`" in " ".join(text.split())  # the console may wrap the line
    assert "✗ qwen3:8b: not tried: Ollama is not reachable" in text


@pytest.mark.parametrize(
    ("kind", "url"), [("openai", "http://127.0.0.1:9/v1"), ("llamacpp", "http://127.0.0.1:9")]
)
async def test_pull_refuses_other_backends_with_64(
    kind: str, url: str, write_config: WriteConfig
) -> None:
    """Only Ollama can pull: other kinds get exit 64 and where to get their models instead."""
    code, text = await _pull(write_config(url=url, kind=kind))
    assert code == EXIT_USAGE
    assert NOT_OLLAMA in " ".join(text.split())
    assert f"backend kind '{kind}'" in text


def _row(rows: list[ModelRow], name: str) -> ModelRow:
    [row] = [r for r in rows if r.name == name]
    return row


async def test_list_shows_roles_residency_gpu_share_and_missing_models(
    fake_ollama: FakeOllama, write_config: WriteConfig
) -> None:
    """After a load the model is resident with its VRAM; a 30B model on the fake's 12 GB is
    partly on the CPU; a configured model the server lacks is marked missing."""
    path = write_config(url=fake_ollama.url, model_quality="qwen3:999b")
    cfg = load_config(path, check_prompts=False)
    async with open_backend(cfg) as backend:
        before = await list_models(cfg, backend)
        await backend.load("qwen3:8b", RunnerOptions(num_ctx=8192), "5m")
        rows = await list_models(cfg, backend)
        await backend.load("qwen3:32b", RunnerOptions(num_ctx=8192), "5m")
        offloaded = _row(await list_models(cfg, backend), "qwen3:32b")
    assert not _row(before, "qwen3:8b").resident
    assert [r.name for r in rows[:2]] == ["qwen3:999b", "qwen3:8b"]  # configured first
    missing = _row(rows, "qwen3:999b")
    assert (missing.missing, missing.resident, missing.size_gb) == (True, False, None)
    volume = _row(rows, "qwen3:8b")
    assert volume.roles_text == "volume"
    assert volume.resident and not volume.missing
    assert volume.size_gb == pytest.approx(5_225_400_000 / 2**30)
    assert volume.size_vram_gb is not None and volume.size_vram_gb > volume.size_gb
    assert volume.gpu_share == 1.0
    other = _row(rows, "qwen3:32b")
    assert (other.roles_text, other.resident, other.gpu_share) == ("-", False, None)
    assert offloaded.resident
    assert offloaded.gpu_share is not None and offloaded.gpu_share < 1.0

    console, out = _console()
    render_models(rows, console)
    text = out.getvalue()
    assert "qwen3:8b" in text and "volume" in text and "100%" in text
    assert "configured but missing: qwen3:999b" in text
