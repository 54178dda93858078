"""Config loading: valid files load; each malformed one exits 78 with a message naming the key."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gen_service.cli import main
from gen_service.config import config_warnings, load_config
from gen_service.errors import EXIT_CONFIG, ConfigError

from .conftest import REPO

EXAMPLE = REPO.parent / "shared" / "docs" / "config-example.toml"


def test_generated_config_loads(write_config: Callable[..., Path]) -> None:
    """A complete sequential config loads, resolves paths and renders every template."""
    cfg = load_config(write_config())
    assert cfg.schedule.mode == "sequential"
    assert cfg.datatypes["personality_traits"].batch_size == 5
    assert cfg.model_for("dramatic_irony").name == "qwen3:30b-a3b"
    assert cfg.service.db.is_absolute()


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    """db and prompts_dir given relative are taken relative to the config file."""
    text = (REPO / "systemd" / "gen-service.toml").read_text()
    path = tmp_path / "sub" / "c.toml"
    path.parent.mkdir()
    path.write_text(text.replace('db = "/var/lib/gen-service/samples.db"', 'db = "x/s.db"'))
    cfg = load_config(path, check_prompts=False)
    assert cfg.service.db == path.parent / "x" / "s.db"


@pytest.mark.skipif(not EXAMPLE.exists(), reason="shared docs not beside the checkout")
def test_spec_example_config_is_valid() -> None:
    """The interface example in shared/docs parses with this build's model."""
    cfg = load_config(EXAMPLE, check_prompts=False)
    assert cfg.schedule.mode == "clock"
    assert len(cfg.schedule.phases) == 7


def test_production_config_is_valid_and_renders(tmp_path: Path) -> None:
    """systemd/gen-service.toml is valid and its templates render with the shipped prompts."""
    cfg = load_config(REPO / "systemd" / "gen-service.toml")
    assert cfg.service.prompts_dir == REPO / "prompts"
    assert cfg.datatypes["emotional_authenticity"].daily_target == 1500


def _swap(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


OVERLAP = """
[schedule]
mode = "clock"
backfill = true

[[schedule.phases]]
name = "a"
kind = "generate"
datatypes = ["emotional_authenticity"]
start = "00:00"
end = "05:00"

[[schedule.phases]]
name = "b"
kind = "generate"
datatypes = ["dramatic_irony"]
start = "04:00"
end = "08:00"
"""

BAD_CONFIGS: dict[str, tuple[Callable[[str], str], str]] = {
    "wrong_type": (lambda t: _swap(t, "batch_size = 5", 'batch_size = "ten"'), "batch_size"),
    "unknown_key": (
        lambda t: _swap(t, "max_retries = 3", "max_retries = 3\nretires = 2"),
        "[backend] retires",
    ),
    "unknown_role": (lambda t: _swap(t, 'model = "volume"', 'model = "huge"'), "huge"),
    "negative_target": (
        lambda t: _swap(t, "total_target = 30", "total_target = -5"),
        "total_target",
    ),
    "batch_too_large": (lambda t: _swap(t, "batch_size = 5", "batch_size = 80"), "batch_size"),
    "temperature_out_of_range": (
        lambda t: _swap(t, "temperature = 0.8", "temperature = 3.5"),
        "temperature",
    ),
    "unknown_datatype_in_phase": (
        lambda t: _swap(t, 'datatypes = ["tension_building"]', 'datatypes = ["gossip"]'),
        "[schedule.phases[3]] datatypes",
    ),
    "unknown_datatype_table": (
        lambda t: (
            t + '\n[datatypes.gossip]\nmodel = "quality"\n'
            "batch_size = 1\ntemperature = 1\ndaily_target = 1\n"
            "total_target = 1\n"
        ),
        "gossip",
    ),
    "missing_key": (lambda t: _swap(t, "temperature = 0.8\n", ""), "temperature"),
    "toml_syntax": (lambda t: _swap(t, "[backend]", "[backend"), "not valid TOML"),
    "bad_timezone": (
        lambda t: _swap(t, 'timezone = "UTC"', 'timezone = "Mars/Olympus"'),
        "timezone",
    ),
    "overlapping_phases": (lambda t: t[: t.index("[schedule]")] + OVERLAP, "overlaps phase 'a'"),
    "bad_time": (
        lambda t: (t[: t.index("[schedule]")] + OVERLAP).replace('"08:00"', '"25:00"'),
        "end",
    ),
    "daily_above_total": (
        lambda t: _swap(t, "daily_target = 30", "daily_target = 300"),
        "daily_target",
    ),
    "bad_url": (lambda t: _swap(t, 'url = "http://127.0.0.1:9"', 'url = "localhost:11434"'), "url"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_78_naming_the_key(
    case: str, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each malformed config gives exit 78 and one message that names the file and key."""
    mutate, expected = BAD_CONFIGS[case]
    good = write_config().read_text()
    path = write_config(mutate(good), name=f"{case}.toml")
    code = main(["check-config", str(path)])
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert expected in err
    assert str(path) in err
    assert "Traceback" not in err
    assert err.count("\n") == 1  # one paragraph


def test_missing_template_is_a_config_error(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A prompts_dir without the data type's template is caught at load, naming the file."""
    empty = tmp_path / "no-prompts"
    empty.mkdir()
    text = write_config().read_text()
    start = text.index("prompts_dir")
    end = text.index("\n", start)
    path = write_config(text[:start] + f'prompts_dir = "{empty}"' + text[end:], name="p.toml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "system.j2" in str(info.value) or ".j2" in str(info.value)


def test_missing_config_file_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --config path that does not exist says so and exits 78."""
    code = main(["status", "--config", str(tmp_path / "nope.toml")])
    assert code == EXIT_CONFIG
    assert "no such config file" in capsys.readouterr().err


def test_check_config_in_a_real_process_prints_no_traceback(
    write_config: Callable[..., Path],
) -> None:
    """The installed entry point exits 78 with a plain message, no traceback."""
    path = write_config(
        write_config().read_text().replace("batch_size = 5", "batch_size = 0"), name="bad.toml"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gen_service", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == EXIT_CONFIG
    assert "batch_size" in proc.stderr and "Traceback" not in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "gen_service", "check-config", str(write_config())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok")


def test_check_config_warns_when_a_configured_batch_cannot_fit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The production config asks qwen3:8b for 25 personality samples in an 8,192 context:
    check-config says each request will ask for fewer, and why (a warning, exit 0)."""
    assert main(["check-config", str(REPO / "systemd" / "gen-service.toml")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "ok"
    personality = next(
        line for line in captured.err.splitlines() if "[datatypes.personality_traits]" in line
    )
    assert "batch_size 25 does not fit" in personality
    assert "num_ctx 8,192 leaves" in personality and "Fix: lower batch_size to" in personality
    emotional = next(
        line for line in captured.err.splitlines() if "[datatypes.emotional_authenticity]" in line
    )
    assert "num_predict is 6,000" in emotional


def test_check_config_warns_when_check_workers_leave_no_core(
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As many check workers as cores leave none to the event loop: check-config says so and
    how many would help (a warning, exit 0); fewer workers than cores, no warning."""
    path = write_config()
    text = path.read_text().replace("[service]\n", "[service]\ncheck_workers = 4\n", 1)
    path.write_text(text)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "ok"
    warning = next(line for line in captured.err.splitlines() if "check_workers" in line)
    assert "check_workers = 4 on a machine with 2 CPU cores" in warning
    assert "at most 1 is useful here" in warning
    cfg = load_config(path)
    assert config_warnings(cfg, cores=8) == []
    assert any("check_workers = 4" in w for w in config_warnings(cfg, cores=4))
