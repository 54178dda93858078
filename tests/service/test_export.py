"""`gen-service export` on real SQLite files: what is exported, splits by cluster that stay put
as data grows, balancing, the dataset card and manifest, loading with Hugging Face `datasets`
(JSONL and Parquet, chat included), bad options, and the whole path from a judged run."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
import yaml

import gen_service
from gen_service.adapters.store import Store
from gen_service.adapters.store.quality import JudgmentRow
from gen_service.adapters.store.review import decide, open_for_review
from gen_service.cli import main
from gen_service.config import load_config
from gen_service.domain.dataset_card import PROVENANCE
from gen_service.domain.datatypes import REGISTRY
from gen_service.domain.records import BatchRecord, SampleRow
from gen_service.domain.splits import DEFAULT_RATIOS, SPLITS, split_of
from gen_service.testing.fake_ollama import FakeConfig, FakeOllama, JudgeBehaviour

from ..conftest import ALL_TYPES, REPO

EXAMPLES = REPO / "prompts" / "examples"

Fate = Literal["pass", "flag", "flag_accept", "flag_reject", "unjudged"]


# -- building databases through the store's own write paths ---------------------------------


def example_payloads(datatype: str) -> list[str]:
    """The shipped few-shot examples of ``datatype`` as stored payloads (model dumps)."""
    model = REGISTRY[datatype].model
    text = (EXAMPLES / f"{datatype}.jsonl").read_text(encoding="utf-8")
    return [
        json.dumps(model.model_validate_json(line).model_dump(mode="json"), ensure_ascii=False)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("//")
    ]


@dataclass
class Built:
    """What a plan made: per batch, its fate and its accepted / other sample ids."""

    batches: list[tuple[int, str, Fate, list[int]]] = field(default_factory=list)

    def ids(self, *fates: Fate, datatype: str | None = None) -> set[int]:
        return {
            i
            for _, d, fate, ids in self.batches
            if fate in fates and (datatype is None or d == datatype)
            for i in ids
        }


_hashes = itertools.count()


def build(db: Path, plan: list[tuple[str, int, Fate, float]], built: Built | None = None) -> Built:
    """Commit one batch per plan entry (``n`` accepted samples plus one rejected one), then
    judge, flag and review it as its fate says, with the store's and review's own code."""
    built = built or Built()
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    day = now[:10]

    async def commit() -> list[tuple[int, str, Fate, list[int]]]:
        made: list[tuple[int, str, Fate, list[int]]] = []
        async with Store.open(db) as store:
            for datatype, n, fate, mean in plan:
                payloads = example_payloads(datatype)
                rows = [
                    SampleRow(
                        datatype,
                        "accepted",
                        payloads[i % len(payloads)],
                        content_hash=f"h{next(_hashes)}",
                        item_index=i,
                        brief_json=json.dumps({"facets": {"n": i}, "quota_key": "", "pins": {}}),
                    )
                    for i in range(n)
                ]
                rows.append(SampleRow(datatype, "rejected", payloads[0], reason="checks: no"))
                result = await store.commit_batch(
                    None,
                    BatchRecord(
                        datatype=datatype,
                        model="qwen3:8b",
                        phase="p",
                        status="ok",
                        attempts=1,
                        requested=n + 1,
                        temperature=0.8,
                        num_predict=1000,
                        seed=1,
                        created_at=now,
                        day=day,
                        samples=tuple(rows),
                    ),
                )
                accepted = sample_ids(db, result.batch_id, "accepted")
                made.append((result.batch_id, datatype, fate, accepted))
                if fate == "unjudged":
                    continue
                first = accepted[0]
                scores = dict.fromkeys(
                    ("authenticity", "consistency", "complexity", "usability"), mean
                )
                await store.commit_judgments(
                    result.batch_id,
                    [JudgmentRow(first, "judge", mean, scores, 1.0, True, None, (), "")],
                    mean=mean,
                    flagged=fate.startswith("flag"),
                    reason="judged mean below 0.70" if fate.startswith("flag") else None,
                    day=day,
                )
        return made

    made = anyio.run(commit)
    conn = open_for_review(db)
    try:
        for batch_id, _, fate, _ in made:
            if fate in ("flag_accept", "flag_reject"):
                decision: Literal["accepted", "rejected"] = (
                    "accepted" if fate == "flag_accept" else "rejected"
                )
                decide(conn, batch_id, decision, None, now)
        built.batches.extend(made)
    finally:
        conn.close()
    return built


def sample_ids(db: Path, batch_id: int, status: str) -> list[int]:
    """Ids of a batch's samples of ``status``, in order."""
    rows = sql(
        db,
        "SELECT id FROM samples WHERE batch_id = ? AND status = ? ORDER BY id",
        (batch_id, status),
    )
    return [int(r[0]) for r in rows]


def sql(db: Path, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        with conn:
            return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def export(db: Path, out: Path, *args: str) -> int:
    return main(["export", "--db", str(db), "--out", str(out), *args])


def read_export(out: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The JSONL rows of an export, per type and split, found through its manifest."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name, info in manifest["datatypes"].items():
        rows[name] = {}
        for split, path in info["files"].items():
            text = (out / path).read_text(encoding="utf-8")
            rows[name][split] = [json.loads(line) for line in text.splitlines()]
    return rows


def exported_ids(out: Path) -> set[int]:
    return {r["id"] for splits in read_export(out).values() for rs in splits.values() for r in rs}


def split_by_id(out: Path) -> dict[int, str]:
    return {
        r["id"]: split
        for splits in read_export(out).values()
        for split, rs in splits.items()
        for r in rs
    }


@pytest.fixture
def mixed_db(tmp_path: Path) -> tuple[Path, Built]:
    """Batches of every fate: passed at 0.9 and 0.75, flagged and unreviewed, flagged and
    accepted in review (0.6), flagged and rejected, unjudged."""
    db = tmp_path / "mixed.db"
    built = build(
        db,
        [
            ("personality_traits", 4, "pass", 0.9),
            ("personality_traits", 3, "flag", 0.5),
            ("personality_traits", 3, "flag_accept", 0.6),
            ("personality_traits", 3, "flag_reject", 0.5),
            ("personality_traits", 3, "unjudged", 0.0),
            ("personality_traits", 3, "pass", 0.75),
        ],
    )
    return db, built


# -- what is exported ------------------------------------------------------------------------


def test_only_passed_and_review_accepted_samples_are_exported(
    mixed_db: tuple[Path, Built], tmp_path: Path
) -> None:
    """By default: accepted samples of batches the judge passed and of flagged batches a person
    accepted; never flagged-unreviewed, review-rejected, rejected or unjudged ones."""
    db, built = mixed_db
    assert export(db, tmp_path / "out") == 0
    rows = [r for rs in read_export(tmp_path / "out")["personality_traits"].values() for r in rs]
    assert {r["id"] for r in rows} == built.ids("pass", "flag_accept")
    rejected = {i for (i,) in sql(db, "SELECT id FROM samples WHERE status = 'rejected'")}
    assert rejected and not rejected & {r["id"] for r in rows}
    by_id = {r["id"]: r for r in rows}
    for i in built.ids("flag_accept"):
        assert by_id[i]["reviewed"] is True and by_id[i]["quality"] == 0.6
    for i in built.ids("pass"):
        assert by_id[i]["reviewed"] is False and by_id[i]["judged"] is True
    assert {by_id[i]["quality"] for i in built.ids("pass")} == {0.9, 0.75}


def test_include_unjudged_and_min_quality(mixed_db: tuple[Path, Built], tmp_path: Path) -> None:
    """--include-unjudged adds the unjudged batches (judged false, quality null);
    --min-quality drops judged batches below it, reviewed ones included, but not unjudged."""
    db, built = mixed_db
    assert export(db, tmp_path / "a", "--include-unjudged") == 0
    assert exported_ids(tmp_path / "a") == built.ids("pass", "flag_accept", "unjudged")
    rows = read_export(tmp_path / "a")["personality_traits"]
    unjudged = [r for rs in rows.values() for r in rs if r["id"] in built.ids("unjudged")]
    assert unjudged and all(r["judged"] is False and r["quality"] is None for r in unjudged)
    assert export(db, tmp_path / "b", "--min-quality", "0.8") == 0
    best = {i for b, _, f, ids in built.batches if f == "pass" for i in ids if _mean(db, b) >= 0.8}
    assert best and exported_ids(tmp_path / "b") == best
    assert export(db, tmp_path / "c", "--min-quality", "0.8", "--include-unjudged") == 0
    assert exported_ids(tmp_path / "c") == best | built.ids("unjudged")
    assert export(db, tmp_path / "d", "--min-quality", "0.6") == 0
    assert exported_ids(tmp_path / "d") == built.ids("pass", "flag_accept")


def _mean(db: Path, batch_id: int) -> float:
    return float(sql(db, "SELECT judged_mean FROM batches WHERE id = ?", (batch_id,))[0][0])


def test_payload_is_exported_as_stored_with_provenance(
    mixed_db: tuple[Path, Built], tmp_path: Path
) -> None:
    """Each row is the stored payload's fields unchanged, then the provenance columns in the
    documented order; the brief is the stored JSON text."""
    db, _ = mixed_db
    assert export(db, tmp_path / "out") == 0
    stored = {
        i: (json.loads(p), b, batch)
        for i, p, b, batch in sql(db, "SELECT id, payload, brief, batch_id FROM samples")
    }
    names = [c.name for c in PROVENANCE]
    for rs in read_export(tmp_path / "out")["personality_traits"].values():
        for row in rs:
            payload, brief, batch_id = stored[row["id"]]
            assert list(row)[: len(payload)] == list(payload)
            assert {k: row[k] for k in payload} == payload
            assert list(row)[len(payload) :] == names
            assert row["brief"] == brief and row["batch_id"] == batch_id
            assert row["cluster_id"] == row["id"]  # no cluster: its own
            assert row["model"] == "qwen3:8b"


def test_samples_that_no_longer_validate_are_counted_not_exported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An accepted sample whose stored payload does not validate against its type's model
    today is left out, counted in the manifest and named in a warning; an empty database
    exports nothing and says why."""
    db = tmp_path / "old.db"
    built = build(db, [("tension_building", 3, "pass", 0.9)])
    stale = min(built.ids("pass"))
    sql(db, "UPDATE samples SET payload = ? WHERE id = ?", ('{"technique": "x"}', stale))
    assert export(db, tmp_path / "out") == 0
    assert exported_ids(tmp_path / "out") == built.ids("pass") - {stale}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["datatypes"]["tension_building"]["skipped_invalid"] == 1
    assert "1 accepted samples no longer validate" in capsys.readouterr().err
    anyio.run(_open_empty, tmp_path / "empty.db")
    assert export(tmp_path / "empty.db", tmp_path / "none") == 0
    assert "has no samples yet" in capsys.readouterr().err
    assert json.loads((tmp_path / "none" / "manifest.json").read_text())["datatypes"] == {}


async def _open_empty(db: Path) -> None:
    async with Store.open(db):
        pass


# -- splits ----------------------------------------------------------------------------------


def _cluster(db: Path, ids: set[int]) -> None:
    """Put three in four samples into 37 shared clusters spread over time (the near-duplicate
    clustering is built elsewhere; the export only reads cluster_id)."""
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "UPDATE samples SET cluster_id = ? WHERE id = ?",
            [(1_000_000 + i % 37, i) for i in ids if i % 4],
        )
    conn.close()


def cluster_in(split: str) -> int:
    """A cluster id that the default ratios put in ``split``."""
    return next(c for c in itertools.count(5_000_000) if split_of(c, DEFAULT_RATIOS) == split)


def test_clusters_never_straddle_splits_and_reexport_moves_nothing(tmp_path: Path) -> None:
    """Samples sharing a cluster land in one split; after more samples arrive (some joining
    old clusters) a new export puts every earlier sample in the same split again."""
    db = tmp_path / "c.db"
    built = build(db, [("tension_building", 5, "pass", 0.9)] * 40)
    _cluster(db, built.ids("pass"))
    assert export(db, tmp_path / "one") == 0
    first = split_by_id(tmp_path / "one")
    assert set(first) == built.ids("pass")
    assert set(first.values()) == set(SPLITS)

    def clusters(out: Path) -> dict[int, set[str]]:
        found: dict[int, set[str]] = defaultdict(set)
        for split, rs in read_export(out)["tension_building"].items():
            for r in rs:
                found[r["cluster_id"]].add(split)
        return found

    one = clusters(tmp_path / "one")
    assert sum(1 for c in one if c >= 1_000_000) == 37
    assert all(len(splits) == 1 for splits in one.values())
    before = set(built.ids("pass"))
    build(db, [("tension_building", 5, "pass", 0.9)] * 12, built)
    _cluster(db, built.ids("pass") - before)
    assert export(db, tmp_path / "two") == 0
    second = split_by_id(tmp_path / "two")
    assert len(second) == 260
    assert {i: second[i] for i in first} == first
    assert all(len(splits) == 1 for splits in clusters(tmp_path / "two").values())


def test_balance_keeps_the_smallest_count_of_every_type(tmp_path: Path) -> None:
    """--balance exports as many samples of each type as the smallest has, the same ones on
    every run; --types limits the export to the named types."""
    db = tmp_path / "b.db"
    built = build(
        db,
        [
            ("personality_traits", 12, "pass", 0.9),
            ("tension_building", 5, "pass", 0.9),
            ("relationship_scoring", 4, "pass", 0.9),
            ("relationship_scoring", 4, "pass", 0.9),
        ],
    )
    assert export(db, tmp_path / "all") == 0
    assert set(read_export(tmp_path / "all")) == {
        "personality_traits",
        "tension_building",
        "relationship_scoring",
    }
    assert export(db, tmp_path / "b1", "--balance") == 0
    assert export(db, tmp_path / "b2", "--balance") == 0
    one = read_export(tmp_path / "b1")
    for name in one:
        ids = {r["id"] for rs in one[name].values() for r in rs}
        assert len(ids) == 5, name
        assert ids <= built.ids("pass", datatype=name)
    assert exported_ids(tmp_path / "b1") == exported_ids(tmp_path / "b2")
    manifest = json.loads((tmp_path / "b1" / "manifest.json").read_text())
    assert manifest["datatypes"]["personality_traits"]["available"] == 12
    assert manifest["options"]["balance"] is True
    assert export(db, tmp_path / "t", "--types", "tension_building,personality_traits") == 0
    limited = read_export(tmp_path / "t")
    assert list(limited) == ["tension_building", "personality_traits"]
    assert not (tmp_path / "t" / "relationship_scoring").exists()


# -- the card, the manifest, and loading with `datasets` -------------------------------------


@pytest.fixture
def loadable_db(tmp_path: Path) -> Path:
    """Three types. Personality traits' unjudged samples sit in a cluster of the train split
    and its judged ones in a validation cluster, so with --include-unjudged every train row
    has a null quality and the validation rows a number: a reader that guessed the columns'
    types from the first rows would fail."""
    db = tmp_path / "l.db"
    built = build(
        db,
        [
            ("dramatic_irony", 3, "unjudged", 0.0),
            ("personality_traits", 3, "unjudged", 0.0),
            *[("dramatic_irony", 4, "pass", 0.8)] * 4,
            *[("personality_traits", 5, "pass", 0.85)] * 4,
            *[("relationship_scoring", 5, "pass", 0.9)] * 3,
        ],
    )
    for fate, split in (("unjudged", "train"), ("pass", "validation")):
        ids = built.ids(fate, datatype="personality_traits")  # type: ignore[arg-type]
        marks = ",".join("?" * len(ids))
        sql(
            db,
            f"UPDATE samples SET cluster_id = ? WHERE id IN ({marks})",
            (cluster_in(split), *ids),
        )
    return db


def load(out: Path, config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    return datasets.load_dataset(str(out), config, cache_dir=str(tmp_path / "hf-cache"))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_datasets_loads_every_config_and_split(
    fmt: str, loadable_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`datasets.load_dataset(DIR, TYPE)` reads each type with its splits and row counts as in
    the manifest, quality nulls included; the chat configs load as `messages`, three rows per
    irony scenario."""
    pytest.importorskip("datasets")
    out = tmp_path / f"ds-{fmt}"
    assert export(loadable_db, out, "--format", fmt, "--chat", "--include-unjudged") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["format"] == fmt
    for name, info in manifest["datatypes"].items():
        assert all(Path(out / p).suffix == f".{fmt}" for p in info["files"].values())
        ds = load(out, name, tmp_path, monkeypatch)
        expected = {s: n for s, n in info["rows"].items() if n}
        assert {s: ds[s].num_rows for s in ds} == expected
        assert ds["train"].features["quality"].dtype == "float64"
        rows = [r for s in ds for r in ds[s]]
        assert any(r["quality"] is None for r in rows) == (name != "relationship_scoring")
        chat = load(out, f"{name}_chat", tmp_path, monkeypatch)
        per = 3 if name == "dramatic_irony" else 1
        assert {s: chat[s].num_rows for s in chat} == {s: n * per for s, n in expected.items()}
        message = chat["train"][0]["messages"]
        assert [m["role"] for m in message] == ["system", "user", "assistant"]
        json.loads(message[2]["content"])
    irony = load(out, "dramatic_irony_chat", tmp_path, monkeypatch)
    assert {r["option"] for s in irony for r in irony[s]} == {"tone_deaf", "misguided", "growth"}


def test_card_and_manifest_describe_the_export(loadable_db: Path, tmp_path: Path) -> None:
    """The card's YAML lists a config per type and per chat rendering, and its text has the
    counts, the columns, quality, diversity and provenance; the manifest has the same
    figures, the options, the time, the database and the config's sha256."""
    config = tmp_path / "gen-service.toml"
    config.write_text(f'[service]\ndb = "{loadable_db}"\n', encoding="utf-8")
    out = tmp_path / "card"
    args = ["--config", str(config), "--chat", "--splits", "0.6,0.2,0.2"]
    assert export(loadable_db, out, *args) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    _, header, body = card.split("---\n", 2)
    meta = yaml.safe_load(header)
    names = [c["config_name"] for c in meta["configs"]]
    assert names == [
        "dramatic_irony",
        "personality_traits",
        "relationship_scoring",
        "dramatic_irony_chat",
        "personality_traits_chat",
        "relationship_scoring_chat",
    ]
    assert [c["config_name"] for c in meta["dataset_info"]] == names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"] == {
        "path": str(config.resolve()),
        "sha256": hashlib.sha256(config.read_bytes()).hexdigest(),
    }
    assert manifest["options"]["splits"] == {"train": 0.6, "validation": 0.2, "test": 0.2}
    assert manifest["database"] == str(loadable_db.resolve())
    assert dt.datetime.fromisoformat(manifest["exported_at"]).tzinfo is not None
    traits = manifest["datatypes"]["personality_traits"]
    assert traits["total"] == 20 and sum(traits["rows"].values()) == 20
    assert traits["quality"]["judged_samples"] == 4
    assert traits["quality"]["overall"] == pytest.approx(0.85)
    assert traits["quality"]["usability"] == pytest.approx(0.85)
    assert 0 < traits["diversity"]["distinct_2"] <= 1
    assert traits["models"] == ["qwen3:8b"]
    for column in ("`cluster_id`", "`quality`", "`reviewed`", "`brief`"):
        assert column in body
    for text in ("## Quality", "## Diversity", "## Chat format", "distinct-2", "0.850"):
        assert text in body
    assert manifest["config"]["sha256"] in body
    if (Path(gen_service.__file__).resolve().parents[1] / ".git").exists():  # a checkout
        revision = manifest["git_revision"]
        assert revision and len(revision.removesuffix("-dirty")) == 40


# -- bad options and the out folder ----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--splits", "0.5,0.5,0.5"], "sum to 1"),
        (["--splits", "0.8,0.2"], "three comma-separated"),
        (["--splits", "a,b,c"], "not a number"),
        (["--splits", "1.2,-0.1,-0.1"], "≥ 0"),
        (["--min-quality", "1.5"], "--min-quality 1.5"),
        (["--min-quality", "high"], "--min-quality high"),
        (["--types", "weather"], "unknown data type weather"),
        (["--format", "csv"], "invalid choice"),
    ],
)
def test_bad_options_exit_64_with_the_fix(
    args: list[str],
    says: str,
    mixed_db: tuple[Path, Built],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A wrong option exits 64, says what is wrong and writes nothing."""
    db, _ = mixed_db
    assert export(db, tmp_path / "out", *args) == 64
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_out_folder_is_refused_unless_force_and_force_touches_only_ours(
    mixed_db: tuple[Path, Built], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-empty --out is refused (64, naming --force); a file as --out too; with --force
    the export's own files are replaced and every other file is left as it was."""
    db, built = mixed_db
    out = tmp_path / "out"
    (out / "personality_traits").mkdir(parents=True)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (out / "personality_traits" / "train.jsonl").write_text("stale\n", encoding="utf-8")
    assert export(db, out) == 64
    assert "--force" in capsys.readouterr().err
    assert export(db, tmp_path / "mixed.db") == 64
    assert "is a file" in capsys.readouterr().err
    assert export(db, out, "--force") == 0
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert "stale" not in (out / "personality_traits" / "train.jsonl").read_text()
    assert exported_ids(out) == built.ids("pass", "flag_accept")
    assert not list(out.rglob("*.partial"))
    assert export(tmp_path / "empty", tmp_path / "fresh-empty") == 74  # no such database


def test_database_problems_exit_74(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing database, or a file that is not one, exits 74 with the fix."""
    assert export(tmp_path / "none.db", tmp_path / "a") == 74
    assert "no database" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    assert export(junk, tmp_path / "b") == 74
    assert "Fix:" in capsys.readouterr().err


def test_parquet_without_pyarrow_exits_69(
    mixed_db: tuple[Path, Built],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without pyarrow importable, --format parquet exits 69 naming the extra to install."""
    db, _ = mixed_db
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert export(db, tmp_path / "out", "--format", "parquet") == 69
    assert "pip install 'gen-service[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- from a judged run to a dataset ----------------------------------------------------------


def test_a_judged_and_reviewed_run_exports_what_passed(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Generate against the fake Ollama, judge (some batches flagged), accept one flagged
    batch in review, export through the config: exactly the samples of passed and
    review-accepted batches come out, the accepted ones marked reviewed."""
    from .test_judge import judged_config

    behaviour = JudgeBehaviour(low_quality_share=0.5)
    with FakeOllama(FakeConfig(time_scale=0.0, seed=21, judge=behaviour)) as fake:
        base = write_config(url=fake.url, target=20, types=ALL_TYPES[1:3]).read_text()
        path = write_config(judged_config(base, validate=False, regenerate=False), name="e.toml")
        assert main(["run", "--config", str(path), "--until-done"]) == 0
        assert main(["validate", "--config", str(path)]) == 0
    db = load_config(path).service.db
    flagged = [b for (b,) in sql(db, "SELECT id FROM batches WHERE flagged = 1 ORDER BY id")]
    assert len(flagged) >= 2, "half the verdicts are low: some batches must be flagged"
    assert main(["review", "--config", str(path), "accept", str(flagged[0])]) == 0
    out = tmp_path / "dataset"
    args = ["export", "--config", str(path), "--out", str(out), "--chat", "--include-test-data"]
    assert main(args) == 0
    expected = {
        i
        for (i,) in sql(
            db,
            "SELECT s.id FROM samples s JOIN batches b ON b.id = s.batch_id WHERE s.status ="
            " 'accepted' AND b.judged_at IS NOT NULL AND (b.flagged = 0 OR b.review = 'accepted')",
        )
    }
    assert expected and exported_ids(out) == expected
    waiting = {i for (i,) in sql(db, "SELECT id FROM samples WHERE status = 'flagged'")}
    assert waiting and not waiting & exported_ids(out)
    reviewed = set(sample_ids(db, flagged[0], "accepted"))
    rows = [r for s in read_export(out).values() for rs in s.values() for r in rs]
    assert reviewed and {r["id"] for r in rows if r["reviewed"]} == reviewed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    chat_rows = manifest["datatypes"]["dramatic_irony"]["chat_rows"]
    assert sum(chat_rows.values()) == 3 * manifest["datatypes"]["dramatic_irony"]["total"]
    # The fake is a test double: the card says its rows are not real data.
    assert sum(i["test_data"] for i in manifest["datatypes"].values()) == len(expected)
    assert "not real data" in (out / "README.md").read_text()


def test_samples_of_a_test_double_are_not_exported_as_real_data(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run on the fake Ollama is recorded as a test-double run, and the export leaves its
    samples out (saying why and how to include them) unless --include-test-data."""
    with FakeOllama(FakeConfig(time_scale=0.0, seed=5)) as fake:
        path = write_config(url=fake.url, target=6, types=ALL_TYPES[2:3])
        assert main(["run", "--config", str(path), "--until-done"]) == 0
    db = load_config(path).service.db
    assert sql(db, "SELECT backend, test_double FROM runs") == [("ollama", 1)]
    accepted = sql(db, "SELECT COUNT(*) FROM samples WHERE status = 'accepted'")[0][0]
    assert accepted >= 6
    capsys.readouterr()
    out = tmp_path / "real"
    assert export(db, out, "--include-unjudged") == 0
    err = capsys.readouterr().err
    assert f"{accepted} samples were left out" in err and "--include-test-data" in err
    assert exported_ids(out) == set()
    assert "were left out" in (out / "README.md").read_text()
    dry = tmp_path / "dry"
    assert export(db, dry, "--include-unjudged", "--include-test-data") == 0
    assert len(exported_ids(dry)) == accepted
    card = (dry / "README.md").read_text()
    assert "Test data" in card and "do not train on them" in card
