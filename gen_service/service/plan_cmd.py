"""``gen-service plan``: what the schedule will produce, before the operator finds out on day 3.

It reads the config, the database's history when there is one (read-only: it works while the
service runs, and plans before the first run from the config's estimates), and the VRAM budget
(``[gpu] vram_gb``, else nvidia-smi); it never asks the backend. The arithmetic is
:mod:`gen_service.domain.planner`'s; this module runs the command: :mod:`.plan_inputs` gathers
the planner's inputs, :mod:`.plan_table` prints a table per phase and :mod:`.plan_notes` the
notes (or :mod:`.plan_json` the JSON), and it returns 0 even when a phase cannot meet its
targets: the plan is a report, and says so.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from rich.console import Console

from gen_service.config import Config
from gen_service.domain.planner import plan
from gen_service.errors import EXIT_OK
from gen_service.service.plan_inputs import History, plan_input, read_history, vram_budget_bytes
from gen_service.service.plan_json import to_json
from gen_service.service.plan_notes import notes
from gen_service.service.plan_table import render

__all__ = [
    "History",
    "notes",
    "plan_input",
    "read_history",
    "render",
    "run_plan",
    "to_json",
    "vram_budget_bytes",
]


def run_plan(
    cfg: Config,
    *,
    db: Path | None,
    now: dt.datetime | None,
    as_json: bool,
    console: Console,
) -> int:
    """Plan ``cfg`` and print it; 0 even when phases fall short (the output says so)."""
    tz = cfg.service.tzinfo()
    if now is None:
        now = dt.datetime.now(tz)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=tz)
    now = now.astimezone(tz)
    history = read_history(
        db or cfg.service.db, explicit=db is not None, today=now.date().isoformat()
    )
    budget = vram_budget_bytes(cfg)
    result = plan(plan_input(cfg, history, now, budget))
    remarks = notes(result, cfg, history)
    if as_json:
        print(json.dumps(to_json(result, cfg, history, remarks), indent=2))
    else:
        render(result, cfg, history, remarks, console)
    return EXIT_OK
