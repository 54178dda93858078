"""doctor and models through the command line, against the fake Ollama over 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gen_service.cli import main
from gen_service.testing.fake_ollama import FakeOllama


def test_doctor_healthy_then_missing_model(
    fake_ollama: FakeOllama,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """doctor exits 0 on a healthy setup and 69 with the pull command for a missing model."""
    assert main(["doctor", "--config", str(write_config(url=fake_ollama.url))]) == 0
    out = capsys.readouterr().out
    assert "backend" in out and "qwen3:8b" in out
    bad = write_config(url=fake_ollama.url, model_volume="qwen3:999b", name="bad.toml")
    assert main(["doctor", "--config", str(bad)]) == 69
    assert "ollama pull qwen3:999b" in capsys.readouterr().out


def test_doctor_down_backend(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """doctor against a port where nothing listens says to start `ollama serve`."""
    assert main(["doctor", "--config", str(write_config(url="http://127.0.0.1:9"))]) == 69
    assert "ollama serve" in capsys.readouterr().out


def test_models_pull_and_list(
    fake_ollama: FakeOllama,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """models pull pulls each configured model; models list shows them with sizes."""
    path = write_config(url=fake_ollama.url)
    assert main(["models", "--config", str(path), "pull"]) == 0
    capsys.readouterr()
    assert main(["models", "--config", str(path), "list"]) == 0
    out = capsys.readouterr().out
    assert "qwen3:30b-a3b" in out and "qwen3:8b" in out


def test_models_without_action_is_usage_error(write_config: Callable[..., Path]) -> None:
    """`models` needs pull or list: exit 64."""
    assert main(["models", "--config", str(write_config())]) == 64
