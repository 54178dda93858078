"""The planner's arithmetic against figures worked out by hand from the README's formulas."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gen_service.domain import planner
from gen_service.domain.planner import (
    JudgeInput,
    Measured,
    ModelInput,
    Observed,
    PhaseInput,
    PlanInput,
    TypeInput,
    plan,
)
from gen_service.testing.fake_ollama import _decode

UTC = dt.UTC
MIDNIGHT = dt.datetime(2026, 3, 2, 0, 0, tzinfo=UTC)

# Model m decodes 20 tok/s, one slot, memory the server's own (no VRAM factor): R = 20 tok/s.
# Type a: 400 tokens per item, all accepted: T = 400, v = 20 / 400 = 0.05/s = 180/h.
# Type b: 180 tokens per item, 90% accepted: T = 200, v = 0.1/s = 360/h.
# Phase A 00:00-02:00 makes a (270/day needs 1.5 h); phase B 02:00-03:00 makes b (540/day
# needs 1.5 h, has 1 h); 03:00-24:00 has no phase.


def small(
    *,
    backfill: bool = True,
    now: dt.datetime = MIDNIGHT,
    a_total: int = 2700,
    b_total: int = 1080,
    a_accepted: int = 0,
    a_today: int = 0,
    validate: bool = False,
    mode: str = "clock",
) -> PlanInput:
    models = {"m": ModelInput("m", "custom:model", tokens_per_s=20)}
    phases = [
        PhaseInput("A", "generate", ("a",), 0, 120),
        PhaseInput("B", "generate", ("b",), 120, 180),
    ]
    judge = None
    if validate:
        models["j"] = ModelInput("j", "custom:judge", tokens_per_s=10)
        phases.append(PhaseInput("V", "validate", (), 180, 240))
        judge = JudgeInput("j", sample_rate=0.1, tokens_per_verdict=100)
    return PlanInput(
        mode=mode,  # type: ignore[arg-type]
        models=models,
        types={
            "a": TypeInput("a", "m", 10, 270, a_total, 400, 1.0, None, a_accepted, a_today),
            "b": TypeInput("b", "m", 20, 540, b_total, 180, 0.9),
        },
        phases=tuple(phases),
        now=now,
        backfill=backfill,
        slots=1,
        memory="server",
        judge=judge,
    )


def test_rates_and_a_clock_day_by_hand() -> None:
    """R, T and v per type; phase A's spare half hour backfills b, which then meets 540."""
    result = plan(small())
    (m,) = result.models
    assert m.aggregate_tokens_per_s == pytest.approx(20.0)
    assert m.speed_source == "config"
    a, b = result.types["a"], result.types["b"]
    assert a.rate.tokens_per_accepted == pytest.approx(400)
    assert b.rate.tokens_per_accepted == pytest.approx(200)
    assert a.rate.samples_per_s == pytest.approx(0.05)
    assert b.rate.samples_per_s == pytest.approx(0.1)
    phase_a, phase_b, gap = result.phases
    assert phase_a.rows[0].hours_needed == pytest.approx(1.5)
    assert phase_a.spare_hours == pytest.approx(0.5)
    assert phase_a.backfill == {"b": pytest.approx(180)}  # 0.5 h x 360/h
    assert phase_b.rows[0].made == pytest.approx(360)  # the 360 still due, in its hour
    assert a.planned_per_day == pytest.approx(270)
    assert b.planned_per_day == pytest.approx(540)
    assert a.feasible and b.feasible and phase_a.feasible and phase_b.feasible
    assert (gap.kind, gap.start, gap.end) == ("idle", "03:00", "24:00")
    assert gap.idle_hours == pytest.approx(21)


def test_slots_and_vram_share_by_hand() -> None:
    """R = tokens_per_s x (0.1 + 0.9 x budget / (size + KV)) x slots^0.6 for a known tag."""
    size = 5_225_400_000  # qwen3:8b in the table
    kv = 4096 * 2 * (2 * 36 * 8 * 128 * 2)  # num_ctx x slots x (2 x layers x kv heads x dim x 2)
    budget = 4 * 2**30
    share = budget / (size + kv)
    inp = PlanInput(
        mode="clock",
        models={"v": ModelInput("v", "qwen3:8b", num_ctx=4096, tokens_per_s=40)},
        types={"a": TypeInput("a", "v", 10, 100, 1000, 400, 1.0)},
        phases=(PhaseInput("A", "generate", ("a",), 0, 60),),
        now=MIDNIGHT,
        slots=2,
        budget_bytes=budget,
    )
    (m,) = plan(inp).models
    assert m.size_bytes == size and m.kv_bytes == kv
    assert m.gpu_share == pytest.approx(share)
    assert m.fits is False
    assert m.aggregate_tokens_per_s == pytest.approx(40 * (0.1 + 0.9 * share) * 2**0.6)


def test_unknown_tag_is_planned_all_on_gpu_with_no_share() -> None:
    """A tag outside the table has no size: its share is unknown and the rate assumes 1."""
    (m,) = plan(replace(small(), memory="vram", budget_bytes=2**30)).models
    assert m.size_bytes is None and m.gpu_share is None and m.fits is None
    assert m.aggregate_tokens_per_s == pytest.approx(20.0)


def test_shortfall_is_flagged_with_its_fixes() -> None:
    """Without backfill b makes 360 of 540: short 180; each fix is worked out by hand."""
    result = plan(small(backfill=False))
    b = result.types["b"]
    assert b.planned_per_day == pytest.approx(360)
    assert b.feasible is False
    phase_a, phase_b, _ = result.phases
    assert phase_a.feasible is True
    assert phase_a.idle_hours == pytest.approx(0.5)  # backfill off: the spare time idles
    assert phase_b.feasible is False
    assert phase_b.shortfall == pytest.approx(180)
    fixes = phase_b.fixes
    assert fixes is not None
    assert fixes.hours == pytest.approx(1.5)  # 1 h + 180 / (360/h)
    assert fixes.speedup == pytest.approx(1.5)
    assert fixes.slots == 2  # 2^0.6 = 1.52 >= 1.5 > 1
    assert fixes.tokens_per_s == {"custom:model": pytest.approx(30)}
    assert fixes.aggregate_tokens_per_s == {"custom:model": pytest.approx(30)}
    assert fixes.tokens_per_accepted == {"b": pytest.approx(200 / 1.5)}
    assert fixes.daily_target == {"b": 360}


def test_more_slots_can_lose_to_offload() -> None:
    """A model that spills: each slot's KV cache takes VRAM, so no slot count is enough and
    the best one is reported."""
    inp = PlanInput(
        mode="clock",
        models={"q": ModelInput("q", "qwen3:32b", num_ctx=16384, tokens_per_s=16)},
        types={"a": TypeInput("a", "q", 10, 10_000, 100_000, 400, 1.0)},
        phases=(PhaseInput("A", "generate", ("a",), 0, 60),),
        now=MIDNIGHT,
        slots=4,
        budget_bytes=int(11.5 * 2**30),
    )
    fixes = plan(inp).phases[0].fixes
    assert fixes is not None
    assert fixes.slots is None
    assert 1 < fixes.best_speedup < fixes.speedup


def test_uncapped_type_takes_what_time_is_left() -> None:
    """b with no daily cap: backfill in phase A (0.5 h, 180) and the gap after B (1.5 h,
    540) add to its own hour (360): all 1,080 today, and nothing counts as short."""
    inp = small()
    types = dict(inp.types)
    types["b"] = TypeInput("b", "m", 20, 0, 1080, 180, 0.9)
    result = plan(replace(inp, types=types))
    b = result.types["b"]
    assert b.planned_per_day == pytest.approx(1080)
    assert b.feasible is None
    assert result.phases[1].feasible is True
    assert result.phases[2].backfill == {"b": pytest.approx(540)}
    assert b.completion == dt.date(2026, 3, 2)


def test_type_in_no_phase_is_never_made() -> None:
    """Backfill only serves types of some phase, as the service does: the others never come."""
    inp = small()
    types = {**inp.types, "c": TypeInput("c", "m", 10, 100, 100, 100, 1.0)}
    assert plan(replace(inp, types=types)).types["c"].status == "never"


def test_judge_load_by_hand() -> None:
    """a: 27 batches of 10, one judged each; b: 30 batches of 18 accepted, ceil(1.8) = 2
    judged each: 87 a day; the judge scores 10 / 100 = 0.1/s, 360 in its hour."""
    result = plan(small(validate=True))
    validate = next(p for p in result.phases if p.kind == "validate")
    assert validate.judge is not None
    assert validate.judge.needed == pytest.approx(87)
    assert validate.judge.capacity == pytest.approx(360)
    assert validate.judge.hours_needed == pytest.approx(87 / 360)
    assert validate.feasible is True


def test_completion_dates_from_a_fixed_now() -> None:
    """2,700 of a at 270 a day from midnight: day 10 is 2026-03-11; from 01:30 with backfill
    off today gets 90 (half an hour), so the rest takes ten more days: 2026-03-12."""
    result = plan(small(backfill=False))
    assert result.types["a"].completion == dt.date(2026, 3, 11)
    assert result.types["b"].completion == dt.date(2026, 3, 4)  # short: 1,080 at 360 a day
    later = plan(small(backfill=False, now=MIDNIGHT.replace(hour=1, minute=30)))
    assert later.types["a"].completion == dt.date(2026, 3, 12)
    assert later.types["b"].completion == dt.date(2026, 3, 4)  # 360 + 360 + 360
    held = plan(small(backfill=False, a_accepted=2430, a_today=0))
    assert held.types["a"].completion == dt.date(2026, 3, 2)  # 270 left: today
    done = plan(small(a_accepted=2700))
    assert done.types["a"].status == "done"


def test_completion_counts_what_today_already_holds() -> None:
    """Today's quota is the daily target less what today holds: at 01:00 with 180 made
    today, a makes 90 more today (not 180), so 2,730 is reached on the eleventh day."""
    result = plan(
        small(
            backfill=False,
            now=MIDNIGHT.replace(hour=1),
            a_total=2730,
            a_accepted=180,
            a_today=180,
        )
    )
    # 2,730 - 180 - 90 = 2,460 left at 270 a day: ten more days, 2026-03-12.
    assert result.types["a"].completion == dt.date(2026, 3, 12)


def test_sequential_pass_by_hand() -> None:
    """A pass: a 1.5 h, b 1.5 h, the judge 87 / 360 h: 3.2417 h; a's 270 a pass is
    270 x 24 / 3.2417 a day."""
    result = plan(small(validate=True, mode="sequential"))
    pass_h = 1.5 + 1.5 + 87 / 360
    assert result.pass_hours == pytest.approx(pass_h)
    assert result.types["a"].planned_per_day == pytest.approx(270 * 24 / pass_h)
    assert result.types["a"].feasible is True
    assert [p.hours for p in result.phases] == pytest.approx([1.5, 1.5, 87 / 360])


def test_history_replaces_the_estimates() -> None:
    """Enough history: T = eval_tokens / accepted and R = tokens / busy seconds; too little
    history keeps the estimates."""
    enough = Observed(batches=12, requested=120, accepted=100, eval_tokens=50_000)
    measured = Measured(batches=12, eval_tokens=60_000, busy_s=1_200)
    inp = small()
    models = {"m": ModelInput("m", "custom:model", tokens_per_s=20, measured=measured)}
    types = dict(inp.types)
    types["a"] = TypeInput("a", "m", 10, 270, 2700, 400, 1.0, enough)
    result = plan(replace(inp, models=models, types=types))
    (m,) = result.models
    assert m.speed_source == "history"
    assert m.aggregate_tokens_per_s == pytest.approx(50.0)
    a = result.types["a"]
    assert a.rate.tokens_source == "history"
    assert a.rate.tokens_per_accepted == pytest.approx(500)
    assert a.rate.acceptance_rate == pytest.approx(100 / 120)
    assert a.rate.samples_per_s == pytest.approx(0.1)
    few = Observed(batches=3, requested=30, accepted=30, eval_tokens=3_000)
    short = Measured(batches=12, eval_tokens=6_000, busy_s=60)
    models = {"m": ModelInput("m", "custom:model", tokens_per_s=20, measured=short)}
    types["a"] = TypeInput("a", "m", 10, 270, 2700, 400, 1.0, few)
    result = plan(replace(inp, models=models, types=types))
    assert result.models[0].speed_source == "config"
    assert result.types["a"].rate.tokens_source == "estimate"


def test_unknown_speed_is_not_a_guess() -> None:
    """A model without tokens_per_s or history: its types have no plan and no date."""
    models = {"m": ModelInput("m", "custom:model")}
    result = plan(replace(small(), models=models))
    assert result.types["a"].planned_per_day is None
    assert result.types["a"].status == "unknown"
    assert result.completion is None


def test_thinking_adds_its_tokens_per_request() -> None:
    """The built-in estimate adds 1,500 thinking tokens per request, spread over the batch."""
    assert planner.estimated_tokens_per_sample("dramatic_irony", 10, think=False) == 730
    assert planner.estimated_tokens_per_sample("dramatic_irony", 10, think=True) == 730 + 150


def test_planner_models_the_gpu_as_the_fake_does() -> None:
    """The plan and a dry run against the fake Ollama slow and share decoding alike."""
    assert planner.SHARING_EXPONENT == _decode.SHARING_EXPONENT
    assert planner.CPU_ONLY_FACTOR == _decode.CPU_ONLY_FACTOR
    for share in (0.0, 0.25, 0.5, 1.0):
        size = 1000
        assert planner.offload_factor(share) == pytest.approx(
            _decode.offload_factor(int(share * size), size)
        )


@given(
    st.lists(st.integers(0, 1439), min_size=2, max_size=10, unique=True),
    st.integers(0, 1439),
)
def test_segments_cover_the_day_once(points: list[int], turn: int) -> None:
    """Phases (some wrapping past midnight) and the gaps between them tile the day."""
    cuts = sorted(points)[: len(points) // 2 * 2]
    spans = list(zip(cuts[::2], cuts[1::2], strict=True))
    phases = [
        PhaseInput(f"p{i}", "process", (), (s + turn) % 1440, (e + turn) % 1440)
        for i, (s, e) in enumerate(spans)
    ]
    segments = planner._segments(phases)
    assert segments[0].start == 0 and segments[-1].end == 1440
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    for p, (s, e) in zip(phases, spans, strict=True):
        assert sum(seg.end - seg.start for seg in segments if seg.phase is p) == e - s
