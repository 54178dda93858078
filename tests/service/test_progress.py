"""`[service] progress`: bars in a foreground run on a terminal, logs printed above them."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from rich.console import Console

from gen_service.config import load_config
from gen_service.logs import configure_logging
from gen_service.service.progress import SampleRate, progress_console
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama

from ..conftest import ALL_TYPES

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def terminal(buffer: io.StringIO) -> Console:
    return Console(file=buffer, force_terminal=True, width=140)


@pytest.mark.anyio
async def test_bars_render_during_a_run_and_logs_go_above_them(
    write_config: Callable[..., Path],
) -> None:
    """With progress = "on", a run draws a bar pair per data type with the phase, the model
    and samples/h into its console, and every log line goes through that console too."""
    # About two seconds of generation: the bars redraw twice a second.
    with FakeOllama(FakeConfig(time_scale=1.0, tokens_per_s=8_000, load_s=0, seed=9)) as fake:
        base = write_config(url=fake.url, target=10, types=ALL_TYPES[:2]).read_text()
        text = base.replace('log_format = "json"', 'log_format = "console"\nprogress = "on"')
        cfg = load_config(write_config(text, name="bars.toml"))
        screen, plain_logs = io.StringIO(), io.StringIO()
        configure_logging("console", "info", stream=plain_logs)
        await run_service(cfg, until_done=True, console=terminal(screen))
    out = ANSI.sub("", screen.getvalue())
    assert "━" in out  # rich's bars
    last_frame = out[out.rindex("phase ") :]
    for datatype in ALL_TYPES[:2]:
        # A last round may overshoot the target by a sample or two; the bar says so.
        done = re.search(rf"{datatype}\s.*\b(1[0-9])/10 total (\d+)%", out)
        assert done, datatype
        assert int(done.group(2)) == 10 * int(done.group(1)), done.group(0)
    assert "samples/h" in last_frame and "running" in last_frame
    # Both phases run on one model and hand over; the header shows whichever holds.
    assert re.search(rf"phase ({ALL_TYPES[0]}|{ALL_TYPES[1]})\s+model qwen3:30b-a3b", out)
    assert "batch.committed" in out  # logs through the bars' console ...
    assert "batch.committed" not in plain_logs.getvalue()  # ... not around it
    structlog.get_logger("test").info("after.bars")
    assert "after.bars" in plain_logs.getvalue()  # logging is given back at the end


def test_progress_setting_decides_where_bars_go() -> None:
    """auto: only on a terminal and with console logs; on: always; off: never."""
    tty, pipe = terminal(io.StringIO()), Console(file=io.StringIO())
    assert progress_console("auto", "console", tty) is tty
    assert progress_console("auto", "auto", tty) is tty
    assert progress_console("auto", "json", tty) is None
    assert progress_console("auto", "console", pipe) is None  # under systemd: plain logs
    assert progress_console("on", "json", pipe) is pipe
    assert progress_console("off", "console", tty) is None


def test_sample_rate_counts_rises_over_the_window() -> None:
    """Samples per hour over the last ten minutes (at least one); drops are not production."""
    rate = SampleRate(0.0, 100)
    assert rate.update(30.0, 110) == pytest.approx(10 * 3600 / 60)  # a minute at least
    assert rate.update(60.0, 105) == pytest.approx(10 * 3600 / 60)  # 5 flagged: no change
    assert rate.update(120.0, 125) == pytest.approx(30 * 3600 / 120)
    assert rate.update(1200.0, 125) == pytest.approx(0.0)  # older rises left the window
