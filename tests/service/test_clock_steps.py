"""Clock mode follows the wall clock: it steps (NTP, a laptop waking up) and daylight saving
starts and ends; the right phase runs and each local day's counts stay right."""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from gen_service.config import load_config
from gen_service.domain.schedule import next_local_midnight, next_offset_change, slot_at
from gen_service.service import runner
from gen_service.service.clock import ScaledClock
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama

pytestmark = pytest.mark.anyio

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


class SteppingClock(ScaledClock):
    """A scaled clock whose wall time can be stepped forward or back, like NTP does."""

    def __init__(self, start: dt.datetime, speed: float) -> None:
        super().__init__(start, speed)
        self.offset = dt.timedelta()

    def now(self) -> dt.datetime:
        return super().now() + self.offset

    def seconds_until(self, moment: dt.datetime) -> float:
        return max(0.0, (moment - self.now()).total_seconds() / self._speed)

    def step(self, delta: dt.timedelta) -> None:
        self.offset += delta


def clock_config(base: str, zone: str, phases: list[tuple[str, str, str, str]]) -> str:
    """A generated config turned into clock mode in ``zone`` with ``phases`` (name, type,
    start, end)."""
    head = base[: base.index("[schedule]")].replace('timezone = "UTC"', f'timezone = "{zone}"')
    text = head + '\n[schedule]\nmode = "clock"\nbackfill = false\n'
    for name, datatype, start, end in phases:
        text += (
            f'\n[[schedule.phases]]\nname = "{name}"\nkind = "generate"\n'
            f'datatypes = ["{datatype}"]\nstart = "{start}"\nend = "{end}"\n'
        )
    return text


async def run_until(
    cfg: object,
    clock: SteppingClock,
    moment: dt.datetime,
    during: Callable[[], object] | None = None,
) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(run_service, cfg, clock=clock))  # type: ignore[arg-type]
        await anyio.sleep(clock.seconds_until(moment))
        tg.cancel_scope.cancel()


@pytest.fixture(autouse=True)
def _look_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits look at the (fast) clock often, so a step is noticed within the test's time."""
    monkeypatch.setattr(runner, "WALL_CHECK_S", 0.05)


TYPES = ("personality_traits", "relationship_scoring")


def fake() -> FakeOllama:
    return FakeOllama(FakeConfig(seed=7, time_scale=1.0, tokens_per_s=4000, load_s=0))


def slots(logs: list[dict[str, object]]) -> list[object]:
    return [e["phase"] for e in logs if e["event"] == "phase.slot"]


async def test_a_step_forward_and_back_changes_phase_with_the_wall_clock(
    write_config: Callable[..., Path],
) -> None:
    """At 11:59 the clock steps an hour forward: the afternoon phase starts at once; then two
    hours back: the morning phase again (its targets were not met)."""
    start = dt.datetime(2026, 6, 1, 11, 50, tzinfo=dt.UTC)
    clock = SteppingClock(start, speed=60.0)
    with fake() as server:
        base = write_config(url=server.url, target=100_000, daily=0, types=TYPES).read_text()
        text = clock_config(
            base, "UTC", [("am", TYPES[0], "00:00", "12:00"), ("pm", TYPES[1], "12:00", "24:00")]
        )
        cfg = load_config(write_config(text, name="steps.toml"))
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(run_service, cfg, clock=clock))
                await anyio.sleep(2)  # 11:52
                clock.step(dt.timedelta(hours=1))  # 12:52: the afternoon
                await anyio.sleep(2)
                clock.step(dt.timedelta(hours=-2))  # 10:56: the morning again
                await anyio.sleep(2)
                tg.cancel_scope.cancel()
    assert slots(logs) == ["am", "pm", "am"]
    assert any(e["event"] == "clock.stepped_back" for e in logs)
    conn = sqlite3.connect(cfg.service.db)
    phases = [p for (p,) in conn.execute("SELECT phase FROM phase_log ORDER BY id")]
    conn.close()
    assert phases == ["am", "pm", "am"]


async def test_spring_forward_shortens_the_phase_holding_the_gap(
    write_config: Callable[..., Path],
) -> None:
    """Europe/Berlin, 29 March 2026: 02:00 becomes 03:00. The night phase (00:00-03:00) ends
    at 03:00 CEST, an hour of wall time early; the day phase follows; the day's counts and the
    database's "today" offset follow the zone."""
    start = dt.datetime(2026, 3, 29, 1, 55, tzinfo=BERLIN)  # 00:55 UTC, five minutes left
    clock = SteppingClock(start, speed=120.0)
    with fake() as server:
        base = write_config(url=server.url, target=100_000, daily=0, types=TYPES).read_text()
        text = clock_config(
            base,
            "Europe/Berlin",
            [("night", TYPES[0], "00:00", "03:00"), ("day", TYPES[1], "03:00", "24:00")],
        )
        cfg = load_config(write_config(text, name="spring.toml"))
        with capture_logs() as logs:
            await run_until(cfg, clock, start + dt.timedelta(minutes=15))
    assert slots(logs)[:2] == ["night", "day"]
    night = next(e for e in logs if e["event"] == "phase.slot" and e["phase"] == "night")
    assert str(night["ends"]).startswith("2026-03-29T03:00+02:00")
    conn = sqlite3.connect(cfg.service.db)
    days = {d for (d,) in conn.execute("SELECT DISTINCT day FROM batches")}
    modifier = conn.execute(
        "SELECT value FROM settings WHERE key = 'utc_offset_modifier'"
    ).fetchone()[0]
    conn.close()
    assert days == {"2026-03-29"}
    assert modifier == "+120 minutes"  # summer time: the views' "today" moved with the zone


async def test_fall_back_never_brings_a_finished_phase_back(
    write_config: Callable[..., Path],
) -> None:
    """Europe/Berlin, 25 October 2026: 03:00 becomes 02:00 again. The night phase ends at its
    02:30 (the first one); when 02:00-02:30 comes round a second time the day phase keeps
    running: no second night, no model swap."""
    start = dt.datetime(2026, 10, 25, 2, 25, tzinfo=BERLIN)  # 00:25 UTC, CEST
    clock = SteppingClock(start, speed=600.0)
    with fake() as server:
        base = write_config(url=server.url, target=100_000, daily=0, types=TYPES).read_text()
        text = clock_config(
            base,
            "Europe/Berlin",
            [("night", TYPES[0], "00:00", "02:30"), ("day", TYPES[1], "02:30", "24:00")],
        )
        cfg = load_config(write_config(text, name="fall.toml"))
        with capture_logs() as logs:
            # 01:40 UTC is 02:40 CET: the repeated 02:00-02:30 (01:00-01:30 UTC) has passed.
            await run_until(cfg, clock, dt.datetime(2026, 10, 25, 1, 40, tzinfo=dt.UTC))
    assert slots(logs) == ["night", "day"]
    conn = sqlite3.connect(cfg.service.db)
    late = conn.execute(
        "SELECT COUNT(*) FROM batches WHERE phase = 'day' AND created_at >= '2026-10-25T01:00'"
    ).fetchone()[0]
    conn.close()
    assert late > 0, "the day phase produces through the repeated hour"


def utc(moment: dt.datetime) -> dt.datetime:
    # Aware datetimes of one zone subtract as wall clocks: compare them in UTC.
    return moment.astimezone(dt.UTC)


def test_slots_on_daylight_saving_days() -> None:
    """A 23-hour day shortens the phase holding the gap; a 25-hour day lengthens the phase
    holding the repeated hour; the repeated hour belongs to the later phase."""

    class P:
        def __init__(self, name: str, start: int, end: int) -> None:
            self.name, self._span = name, (start, end)

        def minutes(self) -> tuple[int, int]:
            return self._span

    phases = [P("night", 0, 4 * 60), P("day", 4 * 60, 1440)]
    spring = slot_at(phases, dt.datetime(2026, 3, 29, 1, 0, tzinfo=BERLIN))
    assert utc(spring.end) - utc(spring.start) == dt.timedelta(hours=3)
    autumn = slot_at(phases, dt.datetime(2026, 10, 25, 1, 0, tzinfo=BERLIN))
    assert utc(autumn.end) - utc(autumn.start) == dt.timedelta(hours=5)
    split = [P("night", 0, 150), P("day", 150, 1440)]
    second_0220 = dt.datetime(2026, 10, 25, 2, 20, tzinfo=BERLIN, fold=1)
    assert slot_at(split, second_0220).phase is split[1]
    first_0220 = dt.datetime(2026, 10, 25, 2, 20, tzinfo=BERLIN, fold=0)
    assert slot_at(split, first_0220).phase is split[0]


def test_offset_changes_and_midnights_are_found() -> None:
    """The day-offset task wakes at the zone's next change and at local midnight."""
    before = dt.datetime(2026, 3, 28, 12, 0, tzinfo=dt.UTC)
    assert next_offset_change(BERLIN, before) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)
    assert next_offset_change(dt.UTC, before) is None
    midnight = next_local_midnight(BERLIN, before)
    assert midnight.astimezone(dt.UTC) == dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC)


def test_local_means_the_system_zone_with_its_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """timezone = "local" follows the system zone's daylight saving, not a fixed offset."""
    from gen_service.config import local_zone

    monkeypatch.setenv("TZ", "Europe/Berlin")
    zone = local_zone()
    winter = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC).astimezone(zone).utcoffset()
    summer = dt.datetime(2026, 7, 15, 12, tzinfo=dt.UTC).astimezone(zone).utcoffset()
    assert (winter, summer) == (dt.timedelta(hours=1), dt.timedelta(hours=2))
