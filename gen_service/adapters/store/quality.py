"""The store's judge and review side: what is due for judging, verdicts committed with their
batch flag, flagged batches waiting for regeneration, and the quality figures of ``status``.

A flagged batch's accepted samples become ``flagged``: they stop counting toward targets (the
trigger-kept daily counts follow) and leave the exact-duplicate index, so a replacement is not
refused as a copy of them. A review puts them back (``accepted``) or rejects them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiosqlite
import anyio

from gen_service.errors import StoreError


@dataclass(frozen=True, slots=True)
class DueSample:
    sample_id: int
    payload: str


@dataclass(frozen=True, slots=True)
class DueBatch:
    """A batch with accepted samples and no verdict yet."""

    batch_id: int
    datatype: str
    model: str
    day: str
    samples: tuple[DueSample, ...]  # its accepted samples


@dataclass(frozen=True, slots=True)
class JudgmentRow:
    """One judged sample, ready to insert."""

    sample_id: int
    model: str
    overall: float
    scores: dict[str, float]
    label_agreement: float | None
    labels_ok: bool | None
    labels_json: str | None
    issues: tuple[str, ...]
    recommendation: str


@dataclass(frozen=True, slots=True)
class FlagOutcome:
    flagged_samples: int  # accepted samples that stopped counting
    day: str
    datatype: str


@dataclass(frozen=True, slots=True)
class PendingRegeneration:
    """A flagged batch to write again."""

    batch_id: int
    datatype: str
    regeneration: int  # the flagged batch's own depth (0: it was a fresh batch)
    briefs: tuple[str, ...]  # the briefs (JSON) of its flagged samples
    recommendations: tuple[str, ...]
    issues: tuple[str, ...]


class QualityQueries:
    """Mixed into :class:`~gen_service.adapters.store.core.Store`."""

    _conn: aiosqlite.Connection
    _stamp: Callable[[], str]
    _transaction: Callable[[], AbstractAsyncContextManager[None]]

    _lock: anyio.Lock

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        # Under the store's lock: on the one connection a read must not land inside another
        # task's open transaction.
        async with self._lock, self._conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def due_for_judging(self, datatypes: Sequence[str], limit: int) -> list[DueBatch]:
        """Batches of ``datatypes`` with accepted samples and no verdict, oldest first."""
        if not datatypes:
            return []
        marks = ",".join("?" * len(datatypes))
        batches = await self._rows(
            "SELECT id, datatype, model, day FROM batches WHERE judged_at IS NULL"
            f" AND accepted > 0 AND status = 'ok' AND datatype IN ({marks})"
            " ORDER BY id LIMIT ?",
            (*datatypes, limit),
        )
        due: list[DueBatch] = []
        for batch_id, datatype, model, day in batches:
            samples = await self._rows(
                "SELECT id, payload FROM samples WHERE batch_id = ? AND status = 'accepted'"
                " ORDER BY id",
                (batch_id,),
            )
            due.append(
                DueBatch(batch_id, datatype, model, day, tuple(DueSample(i, p) for i, p in samples))
            )
        return due

    async def unjudged_batches(self, datatypes: Sequence[str]) -> int:
        if not datatypes:
            return 0
        marks = ",".join("?" * len(datatypes))
        rows = await self._rows(
            "SELECT COUNT(*) FROM batches WHERE judged_at IS NULL AND accepted > 0"
            f" AND status = 'ok' AND datatype IN ({marks})",
            tuple(datatypes),
        )
        return int(rows[0][0])

    async def accepted_per_quota(self, datatype: str) -> dict[str, int]:
        """Accepted samples of ``datatype`` per quota key (what quota steering balances);
        samples without a key are left out."""
        try:
            rows = await self._rows(
                "SELECT quota_key, COUNT(*) FROM samples WHERE datatype = ?"
                " AND status = 'accepted' AND quota_key IS NOT NULL GROUP BY quota_key",
                (datatype,),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot count accepted samples per quota key: {exc}") from exc
        return {str(key): int(count) for key, count in rows}

    async def commit_judgments(
        self,
        batch_id: int,
        judgments: Sequence[JudgmentRow],
        *,
        mean: float,
        flagged: bool,
        reason: str | None,
        day: str,
    ) -> FlagOutcome:
        """Store the verdicts of one batch and its flag in one transaction; a flagged batch's
        accepted samples stop counting (status ``flagged``)."""
        now = self._stamp()
        async with self._transaction():
            async with self._conn.execute(
                "SELECT datatype, day FROM batches WHERE id = ?", (batch_id,)
            ) as cur:
                row = await cur.fetchone()
            assert row is not None, f"no batch {batch_id}"
            datatype, batch_day = row
            await self._conn.executemany(
                "INSERT INTO judgments (sample_id, batch_id, datatype, model, overall,"
                " authenticity, consistency, complexity, usability, label_agreement, labels_ok,"
                " labels, issues, recommendation, created_at, day)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        j.sample_id,
                        batch_id,
                        datatype,
                        j.model,
                        j.overall,
                        j.scores["authenticity"],
                        j.scores["consistency"],
                        j.scores["complexity"],
                        j.scores["usability"],
                        j.label_agreement,
                        None if j.labels_ok is None else int(j.labels_ok),
                        j.labels_json,
                        json.dumps(list(j.issues), ensure_ascii=False),
                        j.recommendation,
                        now,
                        day,
                    )
                    for j in judgments
                ],
            )
            await self._conn.execute(
                "UPDATE batches SET judged_at = ?, judged_mean = ?, flagged = ?,"
                " flag_reason = ? WHERE id = ?",
                (now, mean, int(flagged), reason, batch_id),
            )
            flagged_samples = 0
            if flagged:
                # Out of the near-duplicate index (index_log's trigger tells the writer): a
                # replacement must not be refused as a copy of what it replaces (the
                # signatures stay, for a review).
                cur = await self._conn.execute(
                    "UPDATE samples SET status = 'flagged' WHERE batch_id = ?"
                    " AND status = 'accepted'",
                    (batch_id,),
                )
                flagged_samples = cur.rowcount
                await cur.close()
        return FlagOutcome(flagged_samples, batch_day, datatype)

    async def pending_regenerations(
        self, datatype: str, max_regenerations: int, exclude: Sequence[int] = ()
    ) -> list[PendingRegeneration]:
        """Flagged, unreviewed batches of ``datatype`` with no replacement yet whose
        replacement would be at most ``max_regenerations`` deep; oldest first."""
        rows = await self._rows(
            "SELECT b.id, b.regeneration FROM batches b WHERE b.datatype = ? AND b.flagged = 1"
            " AND b.review IS NULL AND b.regeneration < ?"
            " AND NOT EXISTS (SELECT 1 FROM batches r WHERE r.replaces = b.id"
            " AND r.status = 'ok')"
            " ORDER BY b.id LIMIT 32",
            (datatype, max_regenerations),
        )
        result: list[PendingRegeneration] = []
        for batch_id, regeneration in rows:
            if batch_id in exclude:
                continue
            briefs = await self._rows(
                "SELECT brief FROM samples WHERE batch_id = ? AND status = 'flagged'"
                " AND brief IS NOT NULL ORDER BY item_index",
                (batch_id,),
            )
            notes = await self._rows(
                "SELECT recommendation, issues FROM judgments WHERE batch_id = ? ORDER BY id",
                (batch_id,),
            )
            if not briefs:
                continue
            issues = [i for _, text in notes for i in json.loads(text or "[]")]
            result.append(
                PendingRegeneration(
                    batch_id,
                    datatype,
                    regeneration,
                    tuple(b for (b,) in briefs),
                    tuple(r for r, _ in notes if r),
                    tuple(issues),
                )
            )
        return result
