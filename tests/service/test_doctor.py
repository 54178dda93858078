"""``gen-service doctor`` against the fake Ollama on 127.0.0.1 and real files in tmp_path."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gen_service.adapters.factory import open_backend
from gen_service.adapters.store import Store
from gen_service.config import load_config
from gen_service.errors import EXIT_CONFIG, EXIT_OK, EXIT_UNAVAILABLE
from gen_service.service.doctor import Check, exit_code, render_checks, run_doctor
from gen_service.testing.fake_ollama import FakeOllama

pytestmark = pytest.mark.anyio

WriteConfig = Callable[..., Path]
GPU_12GB = "\n[gpu]\nvram_gb = 12\n"


async def _doctor(path: Path) -> dict[str, Check]:
    cfg = load_config(path)
    async with open_backend(cfg) as backend:
        checks = await run_doctor(cfg, backend)
    names = [c.name for c in checks]
    assert len(names) == len(set(names)), names  # one line per check
    return {c.name: c for c in checks}


def _config(write_config: WriteConfig, url: str, extra: str = "", **kwargs: object) -> Path:
    """The conftest's config for ``url`` with ``extra`` TOML (e.g. a [gpu] table) appended."""
    path = write_config(url=url, **kwargs)
    text = path.read_text(encoding="utf-8")
    assert "[gpu]" not in text
    path.write_text(text + extra, encoding="utf-8")
    return path


async def test_healthy_setup_passes_every_check(
    fake_ollama: FakeOllama, write_config: WriteConfig, tmp_path: Path
) -> None:
    """Models that are pulled, can think where asked and fit 12 GB: every check passes, and
    the doctor leaves no database file behind."""
    path = _config(
        write_config,
        fake_ollama.url,
        GPU_12GB,
        model_quality="qwen3:8b",
        model_volume="qwen3:0.6b",
        batch_size=3,  # a batch whose prompt and answer fit the context
        few_shot=1,
    )
    checks = await _doctor(path)
    assert [c.name for c in checks.values() if not c.ok] == []
    assert set(checks) == {
        "config",
        "database",
        "backend",
        "gpu",
        "model quality",
        "model volume",
        "thinking quality",  # dramatic_irony thinks on the quality model
        "vram quality",
        "vram volume",
    }
    assert str(path) in checks["config"].detail
    assert "sequential" in checks["config"].detail
    assert "0.11.4" in checks["backend"].detail  # the fake's Ollama version
    assert "11.5 GB" in checks["gpu"].detail
    assert "qwen3:8b present" in checks["model quality"].detail
    assert exit_code(checks.values()) == EXIT_OK
    assert not (tmp_path / "samples.db").exists()
    assert "✗" not in render_checks(checks.values())


async def test_missing_model_is_an_error_with_the_pull_fix(
    fake_ollama: FakeOllama, write_config: WriteConfig, tmp_path: Path
) -> None:
    """A model the server does not have fails with `ollama pull NAME`; the others are checked."""
    path = _config(write_config, fake_ollama.url, GPU_12GB, model_quality="qwen3:999b")
    checks = await _doctor(path)
    missing = checks["model quality"]
    assert not missing.ok
    assert missing.severity == "error"
    assert "qwen3:999b" in missing.detail
    assert "run `ollama pull qwen3:999b`" in missing.fix
    assert "vram quality" not in checks  # nothing to size
    assert checks["model volume"].ok
    assert exit_code(checks.values()) == EXIT_UNAVAILABLE
    text = render_checks(checks.values())
    assert "✗ model quality" in text
    assert "fix: run `ollama pull qwen3:999b`" in text


async def test_model_over_the_vram_budget_is_a_warning_with_its_gpu_share(
    fake_ollama: FakeOllama, write_config: WriteConfig, tmp_path: Path
) -> None:
    """qwen3:30b-a3b (17.3 GB + 4 GB of KV cache) on 12 GB warns with its ~54% GPU share and
    does not fail the doctor: Ollama offloads the rest to the CPU."""
    path = _config(write_config, fake_ollama.url, GPU_12GB)
    checks = await _doctor(path)
    over = checks["vram quality"]
    assert not over.ok
    assert over.severity == "warning"
    assert "qwen3:30b-a3b needs ~21.3 GB with its KV cache" in over.detail
    assert "11.5 GB budget → ~54% on GPU, expect fewer tokens/s" in over.detail
    assert "lower num_ctx or num_parallel" in over.fix
    assert checks["vram volume"].ok  # qwen3:8b fits
    assert exit_code(checks.values()) == EXIT_OK
    assert "! vram quality" in render_checks(checks.values())


async def test_a_smaller_context_brings_the_model_inside_the_budget(
    fake_ollama: FakeOllama, write_config: WriteConfig, tmp_path: Path
) -> None:
    """The KV cache counts: the same 30B model fits 24 GB with 4 slots of 8k context."""
    path = _config(write_config, fake_ollama.url, "\n[gpu]\nvram_gb = 24\n")
    checks = await _doctor(path)
    assert checks["vram quality"].ok
    assert "fits the 23.5 GB budget" in checks["vram quality"].detail


async def test_unknown_gpu_budget_is_reported_as_info(
    fake_ollama: FakeOllama,
    write_config: WriteConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without [gpu] vram_gb and without nvidia-smi the budget is unknown: info, not failure."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    path = _config(write_config, fake_ollama.url)
    checks = await _doctor(path)
    gpu = checks["gpu"]
    assert (gpu.ok, gpu.severity) == (True, "info")
    assert "no GPU budget known" in gpu.detail
    assert checks["vram quality"].severity == "info"
    assert exit_code(checks.values()) == EXIT_OK
    assert "i gpu" in render_checks(checks.values())


async def test_think_on_a_model_without_thinking_is_a_warning(
    fake_ollama: FakeOllama, write_config: WriteConfig, tmp_path: Path
) -> None:
    """dramatic_irony sets think = true; smollm2 cannot think, so think will not be sent."""
    path = _config(write_config, fake_ollama.url, GPU_12GB, model_quality="smollm2:135m")
    checks = await _doctor(path)
    thinking = checks["thinking quality"]
    assert (thinking.ok, thinking.severity) == (False, "warning")
    assert "think will not be sent for dramatic_irony" in thinking.detail
    assert exit_code(checks.values()) == EXIT_OK


@pytest.mark.parametrize("how", ["closed port", "go_down"])
async def test_down_backend_is_an_error_with_the_ollama_serve_fix(
    how: str, fake_ollama: FakeOllama, write_config: WriteConfig, tmp_path: Path
) -> None:
    """Nothing answering at the URL fails the backend check, names `ollama serve`, and skips
    the model checks."""
    url = "http://127.0.0.1:9" if how == "closed port" else fake_ollama.url
    path = _config(write_config, url, GPU_12GB)
    if how == "go_down":
        fake_ollama.go_down()
    checks = await _doctor(path)
    backend = checks["backend"]
    assert not backend.ok
    assert backend.severity == "error"
    assert url in backend.detail
    assert "`ollama serve`" in backend.fix
    assert checks["models"].detail == "not checked: the backend is not reachable"
    assert not any(name.startswith(("model ", "vram ")) for name in checks)
    assert exit_code(checks.values()) == EXIT_UNAVAILABLE


async def test_down_openai_server_names_the_url_to_start(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    """An openai backend that does not answer: the fix is to start the server at its URL."""
    path = _config(write_config, "http://127.0.0.1:9/v1", kind="openai")
    checks = await _doctor(path)
    assert not checks["backend"].ok
    assert "start the server at http://127.0.0.1:9/v1" in checks["backend"].fix
    assert exit_code(checks.values()) == EXIT_UNAVAILABLE


def _not_sqlite(path: Path) -> Path:
    path.write_text("name,score\nada,1\n", encoding="utf-8")
    return path


def _foreign_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.close()
    return path


def _under_a_file(path: Path) -> Path:
    path.write_text("", encoding="utf-8")
    return path / "samples.db"  # its "folder" is a file: cannot be created


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (_under_a_file, "cannot open the database"),
        (_not_sqlite, "not a SQLite database"),
        (_foreign_sqlite, "of another program"),
    ],
    ids=["directory", "unwritable location", "not sqlite", "another program's db"],
)
async def test_unusable_database_is_a_config_error(
    make: Callable[[Path], Path],
    said: str,
    fake_ollama: FakeOllama,
    write_config: WriteConfig,
    tmp_path: Path,
) -> None:
    """A db path that is a directory, cannot be created, or holds another file fails with
    exit 78 and the [service].db fix, and the file is left as it was."""
    db = make(tmp_path / "db")
    before = db.read_bytes() if db.is_file() else None
    path = _config(write_config, fake_ollama.url, GPU_12GB, db=db)
    checks = await _doctor(path)
    database = checks["database"]
    assert not database.ok
    assert said in database.detail
    assert "[service].db" in database.fix
    assert exit_code(checks.values()) == EXIT_CONFIG
    if before is not None:
        assert db.read_bytes() == before


async def test_new_database_folder_is_checked_and_left_as_it_was(
    fake_ollama: FakeOllama, write_config: WriteConfig, tmp_path: Path
) -> None:
    """A database in folders that do not exist yet passes; the doctor removes what it made."""
    db = tmp_path / "state" / "gen" / "samples.db"
    path = _config(write_config, fake_ollama.url, GPU_12GB, db=db)
    checks = await _doctor(path)
    assert checks["database"].ok
    assert "can be created" in checks["database"].detail
    assert not (tmp_path / "state").exists()


async def test_existing_database_is_opened_and_kept(
    fake_ollama: FakeOllama, write_config: WriteConfig, tmp_path: Path
) -> None:
    """A gen-service database that exists passes and stays where it is."""
    db = tmp_path / "samples.db"
    async with Store.open(db):
        pass
    path = _config(write_config, fake_ollama.url, GPU_12GB, db=db)
    checks = await _doctor(path)
    assert checks["database"].ok
    assert "a gen-service database" in checks["database"].detail
    assert db.is_file()


@pytest.mark.llamacpp
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_embedded_backend_reports_ram_not_vram(
    anyio_backend: str, write_config: WriteConfig, tmp_path: Path
) -> None:
    """llamacpp: the model is found in-process, its size is RAM (info), and think = true on a
    model that cannot think is a warning."""
    pytest.importorskip("llama_cpp")
    path = _config(
        write_config,
        "http://127.0.0.1:9",
        kind="llamacpp",
        model_quality="smollm2:135m",
        model_volume="smollm2:135m",
    )
    checks = await _doctor(path)
    assert checks["backend"].ok
    assert "gpu" not in checks
    assert checks["model volume"].ok
    ram = checks["vram quality"]
    assert (ram.ok, ram.severity) == (True, "info")
    assert "GB of RAM" in ram.detail
    assert checks["thinking quality"].severity == "warning"
    assert exit_code(checks.values()) == EXIT_OK


# -- exit codes and rendering (pure) -------------------------------------------------------

OK = Check("config", True, "fine")
DOWN = Check("backend", False, "refused", fix="start it: `ollama serve`")
MISSING = Check("model quality", False, "not pulled", fix="run `ollama pull x`")
BAD_DB = Check("database", False, "a directory", fix="point [service].db at a file")
WARN = Check("vram quality", False, "54% on GPU", fix="accept CPU offload", severity="warning")
INFO = Check("gpu", True, "no GPU budget known", severity="info")


@pytest.mark.parametrize(
    ("checks", "code"),
    [
        ([], EXIT_OK),
        ([OK, WARN, INFO], EXIT_OK),
        ([OK, DOWN], EXIT_UNAVAILABLE),
        ([OK, MISSING, WARN], EXIT_UNAVAILABLE),
        ([BAD_DB], EXIT_CONFIG),
        ([BAD_DB, DOWN, MISSING], EXIT_CONFIG),  # the config is fixed first
    ],
)
def test_exit_code_maps_failures_to_sysexits(checks: list[Check], code: int) -> None:
    """Warnings and infos never fail; config/database failures give 78, backend/models 69."""
    assert exit_code(checks) == code


def test_render_puts_a_fix_line_under_each_failure() -> None:
    """One line per check with its mark, and an indented fix line under failures only."""
    text = render_checks([OK, DOWN, WARN, INFO])
    assert text.splitlines() == [
        "✓ config        fine",
        "✗ backend       refused",
        "                fix: start it: `ollama serve`",
        "! vram quality  54% on GPU",
        "                fix: accept CPU offload",
        "i gpu           no GPU budget known",
    ]
