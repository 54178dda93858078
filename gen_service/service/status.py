"""The dashboard behind ``gen-service status``: read-only queries, fast on large databases
(counts come from the trigger-kept ``daily_counts`` table, never from scanning samples).

``status --json`` must answer within 200 ms as a whole process (SPEC §9.5), and the queries
take a few milliseconds: the rest is imports. This module imports only the standard library
and light modules of its own; keep it so (``python -X importtime -m gen_service status``)."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from gen_service.adapters.gpu import read_gpu
from gen_service.adapters.state_file import read_state
from gen_service.adapters.store.readonly import query
from gen_service.domain.dimensions import DIMENSIONS


class ConfiguredTypes(Protocol):
    """A config's data types in schedule order: a validated ``Config`` in the service, the
    cheap :class:`~gen_service.config_file.StatusFacts` in ``gen-service status``."""

    @property
    def datatypes(self) -> Mapping[str, object]: ...


def dashboard(
    conn: sqlite3.Connection,
    cfg: ConfiguredTypes | None,
    *,
    now: dt.datetime,
    gpu_probe: bool = True,
) -> dict[str, Any]:
    """The memo's dashboard keys plus per-type counts (SPEC §6)."""
    rows = query(conn, "SELECT * FROM progress ORDER BY datatype")
    datatypes: dict[str, dict[str, Any]] = {}
    for r in rows:
        datatypes[r["datatype"]] = {
            "accepted": r["accepted"],
            "today": r["today"],
            "daily_target": r["daily_target"],
            "total_target": r["total_target"],
            "pct_of_total": r["pct_of_total"],
            "rejected": r["rejected"],
            "duplicates": r["duplicates"],
            "flagged": r["flagged"],
        }
    if cfg is not None:  # show types in schedule order
        order = {name: i for i, name in enumerate(cfg.datatypes)}
        datatypes = dict(sorted(datatypes.items(), key=lambda kv: order.get(kv[0], 99)))
    hour_ago = (now - dt.timedelta(hours=1)).isoformat(timespec="milliseconds")
    day_ago = (now - dt.timedelta(hours=24)).isoformat(timespec="milliseconds")
    last_hour = query(
        conn,
        "SELECT COALESCE(SUM(accepted), 0) AS n, MIN(created_at) AS first FROM batches"
        " WHERE created_at >= ?",
        (hour_ago,),
    )[0]
    last_day = query(
        conn,
        "SELECT COALESCE(SUM(accepted), 0) AS n, MIN(created_at) AS first FROM batches"
        " WHERE created_at >= ?",
        (day_ago,),
    )[0]
    failed = query(conn, "SELECT COUNT(*) AS n FROM batches WHERE status = 'failed'")[0]["n"]
    quality = query(
        conn,
        "SELECT AVG(overall) AS overall, COUNT(*) AS judged, AVG(authenticity) AS authenticity,"
        " AVG(consistency) AS consistency, AVG(complexity) AS complexity,"
        " AVG(usability) AS usability FROM judgments",
    )[0]
    flagged = query(conn, "SELECT COUNT(*) AS n FROM batches WHERE flagged = 1")[0]["n"]
    waiting_review = query(
        conn,
        "SELECT COUNT(*) AS n FROM batches b WHERE flagged = 1 AND review IS NULL AND NOT EXISTS"
        " (SELECT 1 FROM batches r WHERE r.replaces = b.id AND r.status = 'ok')",
    )[0]["n"]
    regenerated = query(
        conn, "SELECT COUNT(*) AS n FROM batches WHERE replaces IS NOT NULL AND status = 'ok'"
    )[0]["n"]
    latest = query(conn, "SELECT model, phase, created_at FROM batches ORDER BY id DESC LIMIT 1")
    run = query(conn, "SELECT * FROM runs ORDER BY id DESC LIMIT 1")
    running = bool(run) and run[0]["status"] == "running" and _alive(run[0]["pid"])
    phases = query(conn, "SELECT phase, model, gpu_share FROM phase_log ORDER BY id DESC LIMIT 1")
    phase = phases[0] if phases and running else None
    # The present comes from the running service's state file: the phase now, and a pause.
    live = read_state(Path(_db_path(conn))) if running else None
    if live is not None and live.get("pid") != run[0]["pid"]:
        live = None
    gpu = read_gpu() if gpu_probe else None
    per_hour = _rate(last_hour["n"], last_hour["first"], now)
    per_hour_day = _rate(last_day["n"], last_day["first"], now)
    remaining = sum(max(0, v["total_target"] - v["accepted"]) for v in datatypes.values())
    rate_for_eta = per_hour_day or per_hour
    eta = None
    if remaining == 0 and datatypes:
        eta = "done"
    elif rate_for_eta > 0:
        eta = (now + dt.timedelta(hours=remaining / rate_for_eta)).isoformat(timespec="seconds")
    return {
        "database": str(_db_path(conn)),
        "service_running": running,
        "run_id": run[0]["id"] if run else None,
        "samples_generated": sum(v["accepted"] for v in datatypes.values()),
        "samples_per_hour": round(per_hour, 1),
        "samples_per_hour_24h": round(per_hour_day, 1),
        "current_model": (live or {}).get("model")
        or (phase["model"] if phase and phase["model"] else None)
        or (latest[0]["model"] if latest and running else None),
        "current_phase": (live or {}).get("phase")
        or (phase["phase"] if phase else None)
        or (latest[0]["phase"] if latest and running else None),
        "paused": (live or {}).get("paused"),
        # nvidia-smi on this machine, when there is one (the memo's formats).
        "gpu_utilization": f"{gpu.utilization_pct:.0f}%" if gpu else None,
        "vram_usage": f"{gpu.used_gb:.1f} / {gpu.total_gb:.0f} GB" if gpu else None,
        "gpu_share_of_model": phase["gpu_share"] if phase else None,
        "estimated_completion": eta,
        "quality_score_avg": _round(quality["overall"]),
        "quality": {
            "judged": quality["judged"],
            **{d: _round(quality[d]) for d in DIMENSIONS},
        },
        "batches_failed": failed,
        "batches_flagged": flagged,
        "batches_regenerated": regenerated,
        "batches_waiting_review": waiting_review,
        "samples_remaining": remaining,
        "datatypes": datatypes,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _rate(count: int, first: str | None, now: dt.datetime) -> float:
    """Accepted per hour over the window that actually has data (at least 60 s)."""
    if not count or first is None:
        return 0.0
    start = dt.datetime.fromisoformat(first)
    hours = max((now - start).total_seconds(), 60.0) / 3600
    return count / hours


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _db_path(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else ""
