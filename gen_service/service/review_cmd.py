"""``gen-service review``: list flagged batches, show one, accept or reject it (memo stage 3).

Exit codes: 0 done; 64 (EX_USAGE) an id that names no flagged batch; 74 the database."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from rich.console import Console
from rich.table import Table

from gen_service.adapters.store import iso
from gen_service.adapters.store.review import Decision, batch_detail, decide, flagged_batches
from gen_service.errors import EXIT_OK


def render_list(conn: sqlite3.Connection, console: Console, *, include_reviewed: bool) -> int:
    batches = flagged_batches(conn, include_reviewed=include_reviewed)
    if not batches:
        console.print(
            "No flagged batch waits for review." if not include_reviewed else "No flagged batch.",
            markup=False,
        )
        return EXIT_OK
    table = Table(title="flagged batches" + (" (all)" if include_reviewed else ", waiting"))
    for header in ("batch", "type", "day", "judged", "why", "depth", "replaced by", "review"):
        table.add_column(header, overflow="fold")
    for b in batches:
        why = b.reason or ""
        if b.issues:
            why += " — issues: " + "; ".join(b.issues[:3])
        table.add_row(
            str(b.batch_id),
            b.datatype,
            b.day,
            "-" if b.judged_mean is None else f"{b.judged_mean:.2f}",
            why,
            str(b.regeneration),
            "-" if b.replaced_by is None else str(b.replaced_by),
            b.review or "waiting",
        )
    console.print(table)
    console.print(
        "Show one: gen-service review show ID; decide: gen-service review accept|reject ID",
        markup=False,
    )
    return EXIT_OK


def render_show(conn: sqlite3.Connection, batch_id: int, console: Console, *, as_json: bool) -> int:
    detail = batch_detail(conn, batch_id)
    if as_json:
        print(json.dumps(detail, indent=2, ensure_ascii=False))
        return EXIT_OK
    b = detail["batch"]
    console.print(
        f"batch {b['id']}: {b['datatype']}, {b['model']}, {b['created_at']}; "
        f"judged mean {_num(b['judged_mean'])}; "
        + (f"flagged: {b['flag_reason']}" if b["flagged"] else "not flagged")
        + (f"; replaces batch {b['replaces']}" if b["replaces"] else "")
        + (f"; review: {b['review']} at {b['reviewed_at']}" if b["review"] else ""),
        markup=False,
        highlight=False,
    )
    if b["refinement"]:
        console.print(f"asked to address:\n{b['refinement']}", markup=False)
    judgments = {j["sample_id"]: j for j in detail["judgments"]}
    for s in detail["samples"]:
        console.rule(f"sample {s['id']} ({s['status']})")
        if s["brief"]:
            facets = "; ".join(f"{k}: {v}" for k, v in s["brief"]["facets"].items())
            console.print(f"brief: {facets}", markup=False, highlight=False)
        if s["reason"]:
            console.print(f"reason: {s['reason']}", markup=False, highlight=False)
        console.print_json(json.dumps(s["payload"], ensure_ascii=False))
        j = judgments.get(s["id"])
        if j is not None:
            console.print(_judgment_line(j), markup=False, highlight=False)
    for r in detail["reviews"]:
        console.print(
            f"review: {r['decision']} at {r['decided_at']} {r['note'] or ''}", markup=False
        )
    return EXIT_OK


def _judgment_line(j: dict[str, Any]) -> str:
    scores = ", ".join(
        f"{d} {_num(j[d])}" for d in ("authenticity", "consistency", "complexity", "usability")
    )
    labels = ""
    if j["labels_ok"] is not None:
        detail = (j["labels"] or {}).get("detail") or ""
        labels = f"; labels {'agree' if j['labels_ok'] else 'disagree'}" + (
            f" ({detail})" if detail else ""
        )
    issues = "; ".join(j["issues"]) or "none"
    return (
        f"judge: overall {_num(j['overall'])} ({scores}){labels}\n"
        f"issues: {issues}\nrecommendation: {j['recommendation']}"
    )


def render_decision(
    conn: sqlite3.Connection,
    batch_id: int,
    decision: Decision,
    note: str | None,
    console: Console,
    now: dt.datetime,
) -> int:
    changed = decide(conn, batch_id, decision, note, iso(now))
    what = "count again" if decision == "accepted" else "are rejected"
    console.print(
        f"batch {batch_id} {decision}: {changed} sample{'s' if changed != 1 else ''} {what}.",
        markup=False,
    )
    return EXIT_OK


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
