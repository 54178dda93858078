"""An honest config: every accepted key is read somewhere, documented, and a key whose feature
is not built is refused rather than silently ignored; `init` writes a config that works."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

import gen_service.config as config_module
from gen_service.adapters.factory import make_backend
from gen_service.cli import main
from gen_service.config import NOT_BUILT, Config, load_config
from gen_service.errors import EXIT_CONFIG, EXIT_USAGE, ConfigError
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama

from .conftest import REPO, free_port

SECTIONS: dict[str, type[BaseModel]] = {
    "service": config_module.ServiceConfig,
    "backend": config_module.BackendConfig,
    "gpu": config_module.GpuConfig,
    "models": config_module.ModelConfig,
    "datatypes": config_module.DatatypeConfig,
    "validation": config_module.ValidationConfig,
    "dedup": config_module.DedupConfig,
    "schedule": config_module.ScheduleConfig,
    "schedule.phases": config_module.PhaseConfig,
}


def every_key() -> list[tuple[str, str]]:
    """(table, key) for every field of every section of the config model."""
    return [(table, key) for table, model in SECTIONS.items() for key in model.model_fields]


def test_sections_cover_the_whole_model() -> None:
    """The walk below sees every section: the top level holds nothing but these tables."""
    top = set(Config.model_fields) - {"source"}
    assert top == {t.split(".")[0] for t in SECTIONS}


# -- every key is read -----------------------------------------------------------------------

# config.py's own loading and validation read keys to check them; that is not an effect.
_LOADING = {"parse_config", "load_config", "check_templates", "config_warnings"}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[tuple[str, str]]]:
    """Record each section field read outside config.py's loading and validation."""
    seen: set[tuple[str, str]] = set()
    names = {model: table for table, model in SECTIONS.items()}
    config_file = config_module.__file__

    def tracking(self: BaseModel, name: str) -> object:
        value = object.__getattribute__(self, name)
        model = type(self)
        if model in names and name in model.model_fields:
            frame: types.FrameType | None = sys._getframe(1)
            while frame is not None:
                code = frame.f_code
                if code.co_filename == config_file and (
                    code.co_name.startswith("_") or code.co_name in _LOADING
                ):
                    return value
                frame = frame.f_back
            seen.add((names[model], name))
        return value

    monkeypatch.setattr(config_module._Section, "__getattribute__", tracking)
    yield seen


def _full_config(url: str, tmp_path: Path, metrics_port: int) -> str:
    """A clock config that sets every key a run can use: one all-day phase whose daily
    targets are met quickly, so the backfill decision is taken too; the /metrics endpoint
    listens on ``metrics_port``."""
    types_ = ("emotional_authenticity", "personality_traits")
    text = f"""
[service]
db = "{tmp_path / "walk.db"}"
prompts_dir = "{REPO / "prompts"}"
timezone = "UTC"
log_format = "json"
log_level = "info"
shutdown_grace_s = 5
store_unavailable = "pause"
reports_dir = "{tmp_path / "walk-reports"}"
metrics_addr = "127.0.0.1:{metrics_port}"
progress = "auto"

[backend]
kind = "ollama"
url = "{url}"
num_parallel = 2
request_timeout_s = 30
connect_timeout_s = 5
max_retries = 2
retry_initial_s = 0.01
retry_max_s = 0.05
keep_alive = "5m"
api_key_env = ""
response_format = "auto"

[gpu]
vram_gb = 12
reserve_gb = 0.5

[models.quality]
name = "qwen3:30b-a3b"
num_ctx = 8192
num_gpu = 20
tokens_per_s = 32.5

[models.volume]
name = "qwen3:8b"
num_ctx = 8192
tokens_per_s = 42.5

[models.judge]
name = "qwen3:32b"
num_ctx = 8192
tokens_per_s = 16

[validation]
model = "judge"
sample_rate = 0.1
temperature = 0.3
flag_below = 0.7
regenerate_flagged = true
max_regenerations = 2
num_predict = 1500
think = false
tokens_per_verdict = 300

[dedup]
threshold = 0.85

[schedule]
mode = "clock"
backfill = true

[[schedule.phases]]
name = "all-day"
kind = "generate"
datatypes = {list(types_)!r}
start = "00:00"
end = "24:00"
""".replace("'", '"')
    for t in types_:
        text += f"""
[datatypes.{t}]
model = "{"volume" if t == "personality_traits" else "quality"}"
batch_size = 3
temperature = 0.8
think = false
num_predict = 3000
max_string_chars = 400
few_shot = 2
daily_target = 6
total_target = 100000
tokens_per_sample = 500
acceptance_rate = 0.9
"""
    return text


def _stop_after_batches(
    db: Path, batches: int, done: threading.Event, scrape: str, scraped: list[int]
) -> None:
    """Send SIGTERM to this process once the run committed some batches (it drains); before
    that, GET ``scrape`` (the run's /metrics) and keep its HTTP status."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not done.is_set():
        try:
            with sqlite3.connect(db) as conn:
                n = conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
        except sqlite3.Error:
            n = 0
        if n >= batches:
            time.sleep(1.0)  # the phase moves on to its backfill decision
            with contextlib.suppress(httpx.HTTPError):
                scraped.append(httpx.get(scrape, timeout=5).status_code)
            if not done.is_set():
                os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(0.05)


def test_every_accepted_key_is_read_somewhere(
    reads: set[tuple[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Walk every field of the config model: each one is read by the running service, a
    command or a backend, unless it is listed as not built (then it is refused when set)."""
    with FakeOllama(FakeConfig(time_scale=0.0, seed=3)) as fake:
        path = tmp_path / "walk.toml"
        port = free_port()
        path.write_text(_full_config(fake.url, tmp_path, port))
        assert main(["check-config", str(path)]) == 0
        assert main(["doctor", "--config", str(path)]) == 0
        done = threading.Event()
        scraped: list[int] = []
        stopper = threading.Thread(
            target=_stop_after_batches,
            args=(tmp_path / "walk.db", 4, done, f"http://127.0.0.1:{port}/metrics", scraped),
            daemon=True,
        )
        stopper.start()
        try:
            assert main(["run", "--config", str(path)]) == 0  # SIGTERM drains and exits 0
        finally:
            done.set()
            stopper.join()
        assert scraped == [200]  # metrics_addr: the endpoint served the running service
        assert main(["validate", "--config", str(path)]) == 0
        assert main(["status", "--config", str(path), "--json"]) == 0
        assert main(["plan", "--config", str(path)]) == 0
        # plan reads the judge's keys for a validate phase: the same config with one.
        judged = tmp_path / "walk-judged.toml"
        judged.write_text(
            path.read_text().replace(
                'end = "24:00"',
                'end = "20:00"\n\n[[schedule.phases]]\nname = "judge"\nkind = "validate"\n'
                'start = "20:00"\nend = "24:00"',
            )
        )
        assert main(["plan", "--config", str(judged), "--json"]) == 0
        assert main(["report", "--config", str(path), "--format", "html"]) == 0
        assert list((tmp_path / "walk-reports").glob("*.html"))
    # The other backends read their own keys when built.
    cfg = load_config(path, check_prompts=False)
    monkeypatch.setenv("WALK_KEY", "secret")
    for kind, extra in (
        ("openai", {"api_key_env": "WALK_KEY", "url": "http://127.0.0.1:9/v1"}),
        ("llamacpp", {"n_threads": 1}),
    ):
        backend_cfg = cfg.backend.model_copy(update={"kind": kind, **extra})
        models = {
            role: m.model_copy(
                update={"endpoints": ("http://127.0.0.1:9/v1",), "path": tmp_path / "m.gguf"}
            )
            for role, m in cfg.models.items()
        }
        make_backend(cfg.model_copy(update={"backend": backend_cfg, "models": models}))
    capsys.readouterr()
    unread = [
        f"{table}.{key}"
        for table, key in every_key()
        if (table, key) not in reads and (table.split(".")[-1], key) not in NOT_BUILT
    ]
    assert not unread, f"accepted but read nowhere: {unread}"
    stale = [f"{t}.{k}" for t, k in NOT_BUILT if (t, k) in reads]
    assert not stale, f"listed as not built but read: {stale}; remove them from NOT_BUILT"


# -- not built: refused unless at the default -------------------------------------------------


# With every feature built, a built key stands in to keep the mechanism tested.
@pytest.mark.parametrize(("table", "key"), sorted(NOT_BUILT) or [("service", "progress")])
def test_not_built_key_is_refused_unless_default(
    table: str, key: str, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-default value of a not-built feature's key is a config error naming the key."""
    monkeypatch.setitem(NOT_BUILT, (table, key), NOT_BUILT.get((table, key), "a stand-in"))
    base = write_config().read_text()
    model = SECTIONS[table]
    default = model.model_fields[key].get_default(call_default_factory=True)
    other: object = {
        bool: not default if isinstance(default, bool) else None,
        str: '"127.0.0.1:9464"' if key == "metrics_addr" else '"on"',
    }.get(type(default))
    if other is None:
        other = 0.5 if default != 0.5 else 0.25
    value = str(other).lower() if isinstance(other, bool) else other
    if table == "models":
        text = base.replace("[models.quality]\n", f"[models.quality]\n{key} = {value}\n", 1)
    elif f"[{table}]" in base:
        text = base.replace(f"[{table}]\n", f"[{table}]\n{key} = {value}\n", 1)
    else:
        text = base + f"\n[{table}]\n{key} = {value}\n"
    path = write_config(text, name="bad.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert key in message and "not have yet" in message
    assert main(["check-config", str(path)]) == EXIT_CONFIG


def test_not_built_key_at_its_default_is_accepted(write_config: Callable[..., Path]) -> None:
    """The production config sets the judge and dedup keys at their defaults: it loads."""
    cfg = load_config(REPO / "systemd" / "gen-service.toml", check_prompts=False)
    assert cfg.validation.flag_below == 0.70
    assert cfg.dedup.threshold == 0.85


def test_process_phase_is_no_warning(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config accepts validate and process phases, both built, without a warning."""
    base = write_config(num_ctx=16384).read_text()  # batches that fit: no warning about them
    judge = '[models.judge]\nname = "qwen3:32b"\n\n[models.volume]'
    text = base.replace("[models.volume]", judge) + (
        '\n[[schedule.phases]]\nname = "judge"\nkind = "validate"\n'
        '\n[[schedule.phases]]\nname = "tidy"\nkind = "process"\n'
    )
    path = write_config(text, name="phases.toml")
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "ok"
    assert "'judge'" not in captured.err
    assert "'tidy'" not in captured.err and "warning" not in captured.err


# -- documented -------------------------------------------------------------------------------


def test_every_key_is_documented() -> None:
    """The README's Configuration section and the production config name every key."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Configuration") : readme.index("## Operating it")]
    production = (REPO / "systemd" / "gen-service.toml").read_text()
    missing_readme = [
        f"{t}.{k}"
        for t, k in every_key()
        if f"`{k}`" not in section
        and f"`phases.{k}`" not in section
        and f"`{k}`, `" not in section
        and f", `{k}`" not in section
    ]
    assert not missing_readme, f"README does not document {missing_readme}"
    missing_toml = [
        f"{t}.{k}" for t, k in every_key() if t != "schedule.phases" and k not in production
    ]
    assert not missing_toml, f"systemd/gen-service.toml does not mention {missing_toml}"


def test_no_user_facing_text_points_outside_the_repository() -> None:
    """Nothing a user reads points at the development notes beside the checkout."""
    for path in [REPO / "README.md", *(REPO / "gen_service").rglob("*.py")]:
        assert "../shared" not in path.read_text(), path
        assert "config-example" not in path.read_text(), path


# -- init -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["ollama", "embedded"])
def test_init_writes_a_config_that_checks(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """init writes a starter that passes check-config wherever it is written."""
    target = tmp_path / "somewhere" / "else" / "gen-service.toml"
    assert main(["init", str(target), "--backend", backend]) == 0
    assert main(["check-config", str(target)]) == 0
    cfg = load_config(target)
    assert cfg.service.db.parent.is_relative_to(target.parent)
    assert cfg.service.prompts_dir == REPO / "prompts"
    assert cfg.backend.kind == ("ollama" if backend == "ollama" else "llamacpp")
    assert "gen-service check-config" in capsys.readouterr().out


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    """An existing file is kept (exit 64) unless --force is given."""
    target = tmp_path / "gen-service.toml"
    target.write_text("# mine\n")
    assert main(["init", str(target)]) == EXIT_USAGE
    assert target.read_text() == "# mine\n"
    assert main(["init", str(target), "--force"]) == 0
    assert "[backend]" in target.read_text()


def test_init_default_path_is_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a path, init writes ./gen-service.toml, the file `run` looks for first."""
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--backend", "embedded"]) == 0
    assert (tmp_path / "gen-service.toml").is_file()


# -- the wheel carries the prompts ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_runs_without_the_checkout(tmp_path: Path) -> None:
    """The built wheel holds the prompts and both starters; from an unpacked wheel, away from
    the checkout, init and check-config work with prompts_dir unset."""
    pytest.importorskip("hatchling")
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    wheel = next(out.glob("gen_service-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "gen_service/_data/prompts/system.j2" in names
    assert "gen_service/_data/gen-service.toml" in names
    assert "gen_service/_data/quickstart.toml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    for args in (["init", "--backend", "ollama"], ["check-config", "gen-service.toml"]):
        result = subprocess.run(
            [sys.executable, "-m", "gen_service", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import gen_service.resources as r; print(r.prompts_dir())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == str(site / "gen_service" / "_data" / "prompts")
