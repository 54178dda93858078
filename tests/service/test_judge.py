"""The judge phase end to end against the fake Ollama: generate -> judge -> flag -> regenerate,
`gen-service validate`, review, and the quality figures of status."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from gen_service.cli import main
from gen_service.config import load_config
from gen_service.service.supervisor import run_service
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama, JudgeBehaviour

from ..conftest import ALL_TYPES

pytestmark = pytest.mark.anyio

JUDGE_MODEL = "qwen3:32b"


def judged_config(
    base: str,
    *,
    validate: bool = True,
    rate: float = 0.2,
    regenerate: bool = True,
    max_regenerations: int = 2,
) -> str:
    """A generated sequential config with a judge role and, optionally, a validate phase."""
    text = base.replace(
        "[models.volume]",
        f'[models.judge]\nname = "{JUDGE_MODEL}"\nnum_ctx = 8192\n\n[models.volume]',
    )
    text = text.replace(
        "\n[schedule]",
        f'\n[validation]\nmodel = "judge"\nsample_rate = {rate}\nflag_below = 0.70\n'
        f"regenerate_flagged = {str(regenerate).lower()}\nmax_regenerations = {max_regenerations}\n"
        "\n[schedule]",
    )
    if validate:
        text += '\n[[schedule.phases]]\nname = "judge"\nkind = "validate"\n'
    return text


def rows(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def judging_fake() -> Iterator[FakeOllama]:
    """A fake whose judge scores a third of its verdicts low and disagrees on a tenth."""
    behaviour = JudgeBehaviour(low_quality_share=0.3, label_disagreement_share=0.1)
    with FakeOllama(FakeConfig(time_scale=0.0, seed=11, judge=behaviour)) as fake:
        yield fake


async def test_generate_judge_regenerate_until_done(
    judging_fake: FakeOllama, write_config: Callable[..., Path]
) -> None:
    """A sequential run with a validate phase exits 0 only when every target is met by samples
    of judged, unflagged batches; some batches are flagged and regenerated, each replacement
    linked to what it replaces, and every batch has at least one judged sample."""
    base = write_config(url=judging_fake.url, target=30, batch_size=5).read_text()
    cfg = load_config(write_config(judged_config(base), name="judged.toml"))
    outcome = await run_service(cfg, until_done=True)
    assert outcome.reason == "done"
    db = cfg.service.db
    progress = dict(rows(db, "SELECT datatype, accepted FROM progress"))
    assert all(progress[t] >= 30 for t in ALL_TYPES), progress
    # every batch with accepted samples has a verdict, and at least sample_rate of them
    unjudged = rows(
        db,
        "SELECT COUNT(*) FROM batches WHERE accepted > 0 AND status = 'ok' AND judged_at IS NULL",
    )[0][0]
    assert unjudged == 0
    per_batch = rows(
        db,
        "SELECT b.id, b.accepted, COUNT(j.id) FROM batches b JOIN judgments j ON j.batch_id = b.id"
        " GROUP BY b.id",
    )
    assert per_batch and all(n >= max(1, math.ceil(0.2 * a)) for _, a, n in per_batch)
    # the counted samples all belong to judged batches that are not flagged
    counted = rows(
        db,
        "SELECT COUNT(*) FROM samples s JOIN batches b ON b.id = s.batch_id"
        " WHERE s.status = 'accepted' AND (b.flagged = 1 OR b.judged_at IS NULL)",
    )[0][0]
    assert counted == 0
    flagged = rows(db, "SELECT id, regeneration FROM batches WHERE flagged = 1")
    assert flagged, "with 30% low verdicts some batches must be flagged"
    replacements = rows(
        db,
        "SELECT r.id, r.replaces, r.regeneration, f.regeneration, r.refinement FROM batches r"
        " JOIN batches f ON f.id = r.replaces",
    )
    assert replacements, "flagged batches are regenerated"
    for _, replaced, depth, parent_depth, refinement in replacements:
        assert depth == parent_depth + 1
        assert refinement, f"the replacement of {replaced} carries the judge's recommendations"
    assert max(depth for _, _, depth, _, _ in replacements) <= 2
    # a replacement is written from the briefs of what it replaces
    rid, replaced = replacements[0][0], replacements[0][1]
    original = {
        b
        for (b,) in rows(
            db, "SELECT brief FROM samples WHERE batch_id = ? AND status = 'flagged'", (replaced,)
        )
    }
    again = {b for (b,) in rows(db, "SELECT brief FROM samples WHERE batch_id = ?", (rid,))}
    assert again and again <= original
    stats = judging_fake.stats()
    assert stats.judge_requests >= len(per_batch)
    # status reports the judge's figures
    code = main(["status", "--db", str(db), "--json"])
    assert code == 0


async def test_without_regeneration_flagged_batches_wait_for_review(
    write_config: Callable[..., Path],
) -> None:
    """regenerate_flagged = false: no replacement is written; fresh batches meet the targets
    and the flagged ones wait for review."""
    behaviour = JudgeBehaviour(low_quality_share=0.4)
    with FakeOllama(FakeConfig(time_scale=0.0, seed=12, judge=behaviour)) as fake:
        base = write_config(url=fake.url, target=20, types=ALL_TYPES[2:3]).read_text()
        cfg = load_config(write_config(judged_config(base, regenerate=False), name="j.toml"))
        assert (await run_service(cfg, until_done=True)).reason == "done"
    db = cfg.service.db
    assert rows(db, "SELECT COUNT(*) FROM batches WHERE replaces IS NOT NULL")[0][0] == 0
    waiting = rows(db, "SELECT COUNT(*) FROM batches WHERE flagged = 1 AND review IS NULL")[0][0]
    assert waiting > 0
    assert rows(db, "SELECT accepted FROM progress")[0][0] >= 20


async def test_regeneration_chain_stops_at_max_regenerations(
    write_config: Callable[..., Path],
) -> None:
    """When every verdict is low, a chain is regenerated max_regenerations times, then waits
    for review while fresh batches are made."""
    behaviour = JudgeBehaviour(low_quality_share=1.0)
    with FakeOllama(FakeConfig(time_scale=0.0, seed=13, judge=behaviour)) as fake:
        base = write_config(url=fake.url, target=10, types=ALL_TYPES[2:3], batch_size=5).read_text()
        cfg = load_config(write_config(judged_config(base, max_regenerations=1), name="chain.toml"))
        with anyio.move_on_after(8):
            await run_service(cfg, until_done=True)
    db = cfg.service.db
    depths = [d for (d,) in rows(db, "SELECT regeneration FROM batches WHERE status = 'ok'")]
    assert max(depths) == 1
    fresh = [d for d in depths if d == 0]
    assert len(fresh) > 2, "past the limit, fresh batches take the place of the flagged ones"
    children = dict(
        rows(
            db,
            "SELECT replaces, COUNT(*) FROM batches WHERE replaces IS NOT NULL GROUP BY replaces",
        )
    )
    assert all(n == 1 for n in children.values()), "a flagged batch is replaced once"


def test_validate_command_judges_what_is_due(
    judging_fake: FakeOllama, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`gen-service validate` judges every batch waiting for a verdict and exits 0; run again,
    it finds nothing due."""
    base = write_config(url=judging_fake.url, target=15, types=ALL_TYPES[:2]).read_text()
    path = write_config(judged_config(base, validate=False), name="v.toml")
    assert main(["run", "--config", str(path), "--until-done"]) == 0
    db = load_config(path).service.db
    assert rows(db, "SELECT COUNT(*) FROM judgments")[0][0] == 0
    assert main(["validate", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "judged" in out and "batches" in out
    unjudged = rows(db, "SELECT COUNT(*) FROM batches WHERE accepted > 0 AND judged_at IS NULL")
    assert unjudged[0][0] == 0
    assert main(["validate", "--config", str(path)]) == 0
    assert "judged 0 samples in 0 batches" in capsys.readouterr().out


def test_validate_exits_69_when_the_judge_is_unreachable(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """With nothing listening at the backend's address, validate says so and exits 69."""
    base = write_config(url="http://127.0.0.1:9").read_text()
    path = write_config(judged_config(base, validate=False), name="down.toml")
    assert main(["validate", "--config", str(path)]) == 69
    assert "ollama serve" in capsys.readouterr().err


def test_validate_exits_69_when_the_judge_model_is_missing(
    fake_ollama: FakeOllama, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A judge model that is not pulled: exit 69 and the pull command."""
    base = write_config(url=fake_ollama.url).read_text().replace("qwen3:32b", "qwen3:999b")
    path = write_config(
        judged_config(base, validate=False).replace(JUDGE_MODEL, "qwen3:999b"), name="m.toml"
    )
    assert main(["validate", "--config", str(path)]) == 69
    assert "ollama pull qwen3:999b" in capsys.readouterr().err


def test_review_lists_shows_accepts_and_rejects(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """review lists flagged batches with scores and issues; show prints briefs, samples and
    judgments; accept makes the samples count again, reject rejects them; each decision is
    stored with its time; an unknown id exits 64."""
    behaviour = JudgeBehaviour(low_quality_share=1.0)
    with FakeOllama(FakeConfig(time_scale=0.0, seed=14, judge=behaviour)) as fake:
        base = write_config(url=fake.url, target=10, types=ALL_TYPES[2:3]).read_text()
        path = write_config(judged_config(base, validate=False, regenerate=False), name="r.toml")
        assert main(["run", "--config", str(path), "--until-done"]) == 0
        assert main(["validate", "--config", str(path)]) == 0
    db = load_config(path).service.db
    capsys.readouterr()
    assert main(["review", "--config", str(path)]) == 0
    listing = capsys.readouterr().out
    flagged = [b for (b,) in rows(db, "SELECT id FROM batches WHERE flagged = 1 ORDER BY id")]
    assert len(flagged) >= 2
    assert "judged mean" in listing or "below 0.70" in listing
    assert main(["review", "--config", str(path), "show", str(flagged[0])]) == 0
    shown = capsys.readouterr().out
    assert "brief:" in shown and "judge: overall" in shown and "recommendation:" in shown
    assert main(["review", "--config", str(path), "show", str(flagged[0]), "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["judgments"] and detail["samples"][0]["brief"]["pins"]
    before = rows(db, "SELECT accepted FROM progress")[0][0]
    n_first = rows(
        db, "SELECT COUNT(*) FROM samples WHERE batch_id = ? AND status = 'flagged'", (flagged[0],)
    )[0][0]
    assert main(["review", "--config", str(path), "accept", str(flagged[0]), "--note", "fine"]) == 0
    assert rows(db, "SELECT accepted FROM progress")[0][0] == before + n_first
    assert main(["review", "--config", str(path), "reject", str(flagged[1])]) == 0
    statuses = {
        s for (s,) in rows(db, "SELECT status FROM samples WHERE batch_id = ?", (flagged[1],))
    }
    assert statuses <= {"rejected"}
    decisions = rows(db, "SELECT batch_id, decision, note, decided_at FROM reviews ORDER BY id")
    assert [(b, d, n) for b, d, n, _ in decisions] == [
        (flagged[0], "accepted", "fine"),
        (flagged[1], "rejected", None),
    ]
    assert all(at for *_, at in decisions)
    capsys.readouterr()
    assert main(["review", "--config", str(path), "accept", "999999"]) == 64
    assert "there is no batch 999999" in capsys.readouterr().err
    unflagged = rows(db, "SELECT id FROM batches WHERE flagged = 0 AND status = 'ok' LIMIT 1")
    if unflagged:
        assert main(["review", "--config", str(path), "reject", str(unflagged[0][0])]) == 64
        assert "is not flagged" in capsys.readouterr().err
    assert main(["review", "--config", str(path), "list", "--all"]) == 0
    assert "accepted" in capsys.readouterr().out
    assert main(["status", "--config", str(path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["quality_score_avg"] is not None and status["quality_score_avg"] < 0.7
    assert status["batches_flagged"] == len(flagged)
    assert status["batches_regenerated"] == 0
