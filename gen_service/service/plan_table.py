"""``gen-service plan`` on a terminal: a rich table per phase and data type, the models
table, then the notes."""

from __future__ import annotations

from rich.console import Console, JustifyMethod
from rich.table import Table

from gen_service.config import Config
from gen_service.domain.planner import MAX_DAYS, Plan
from gen_service.domain.vram import gib
from gen_service.service.plan_format import count as _n
from gen_service.service.plan_format import date as _date
from gen_service.service.plan_format import hours as _h
from gen_service.service.plan_format import phase_span as _phase_span
from gen_service.service.plan_inputs import History, tokens_per_verdict


def _completion(plan_: Plan, datatype: str) -> str:
    tp = plan_.types[datatype]
    return {
        "date": _date(tp.completion),
        "done": "done",
        "no-more": "no more wanted",
        "never": "never",
        "unknown": "unknown",
        "beyond": f"> {MAX_DAYS // 365} years",
    }[tp.status]


def _ok(feasible: bool | None, short: float = 0.0) -> str:
    if feasible is None:
        return "?"
    if feasible:
        return "✓"
    return f"✗ −{_n(short)}" if short else "✗"


def render(
    result: Plan, cfg: Config, history: History, remarks: list[str], console: Console
) -> None:
    """The per-phase table, the models, then the notes."""
    sequential = result.mode == "sequential"
    title = (
        f"gen-service plan — {cfg.source or 'config'}; {result.mode} schedule; "
        f"now {result.now.isoformat(timespec='minutes')}"
    )
    table = Table(title=title, title_justify="left", caption_justify="left")
    table.caption = "~ estimate (config or built in); plain: measured in the database"
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("phase", "left"),
        *((("time", "left"),) if not sequential else ()),
        ("hours" if not sequential else "h/pass", "right"),
        ("data type", "left"),
        ("model", "left"),
        ("tok/s", "right"),
        ("tok/sample", "right"),
        ("target/day" if not sequential else "per pass", "right"),
        ("plan/day", "right"),
        ("needs", "right"),
        ("ok", "left"),
        ("have/total", "right"),
        ("done by", "left"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=col in ("phase", "data type"))
    by_name = {m.name: m for m in result.models}
    for p in result.phases:
        unknown = any(r.hours_needed is None for r in p.rows)
        hours = "?" if unknown else f"{p.hours:.1f}"
        first = [p.name, *([_phase_span(p)] if not sequential else []), hours]
        if p.kind == "generate":
            for i, r in enumerate(p.rows):
                tp = result.types[r.datatype]
                model = by_name[tp.model]
                rate = model.aggregate_tokens_per_s
                short = max(0.0, r.daily_target - (tp.planned_per_day or 0))
                table.add_row(
                    *(first if i == 0 else [""] * len(first)),
                    r.datatype,
                    tp.model,
                    "?" if rate is None else _tilde(model.speed_source != "history", rate, 1),
                    _tilde(tp.rate.tokens_source != "history", tp.rate.tokens_per_accepted, 0),
                    _n(r.daily_target) if r.daily_target else "no cap",
                    "?" if tp.planned_per_day is None else _n(tp.planned_per_day),
                    "?" if r.hours_needed is None else _h(r.hours_needed),
                    "-" if r.daily_target == 0 else _ok(tp.feasible, short),
                    f"{tp.accepted:,}/{tp.total_target:,}",
                    _completion(result, r.datatype),
                )
        elif p.kind == "validate" and p.judge is not None:
            judge = by_name.get(p.models[0]) if p.models else None
            rate = judge.aggregate_tokens_per_s if judge else None
            load = p.judge
            table.add_row(
                *first,
                f"judge ({cfg.validation.sample_rate:.0%} of each batch)",
                p.models[0] if p.models else "-",
                "?"
                if rate is None or judge is None
                else _tilde(judge.speed_source != "history", rate, 1),
                f"~{tokens_per_verdict(cfg):.0f}",
                _n(load.needed),
                "-" if load.capacity is None else _n(load.capacity),
                "?" if load.hours_needed is None else _h(load.hours_needed),
                _ok(load.feasible, max(0.0, load.needed - (load.capacity or 0))),
                "",
                "",
            )
        else:
            what = "no GPU; beside generation" if p.kind == "process" else "no phase"
            filled = ", ".join(f"{d} +{_n(n)}" for d, n in p.backfill.items() if n >= 0.5)
            table.add_row(*first, what + (f"; backfill {filled}" if filled else ""), *[""] * 9)
    console.print(table)
    console.print(_models_table(result, cfg))
    console.print("Notes:")
    for remark in remarks:
        console.print(f"- {remark}", markup=False, highlight=False, soft_wrap=True)


def _tilde(estimate: bool, value: float, digits: int) -> str:
    return f"{'~' if estimate else ''}{value:,.{digits}f}"


def _models_table(result: Plan, cfg: Config) -> Table:
    table = Table(title="models", title_justify="left")
    for col in ("role", "model", "size GB", "KV GB", "GPU share", "tok/s alone", "tok/s in all"):
        table.add_column(col, justify="left" if col in ("role", "model") else "right")
    for m in result.models:
        share = "?" if m.gpu_share is None else f"~{m.gpu_share:.0%}"
        if result.memory != "vram":
            share = "n/a"
        table.add_row(
            m.role,
            m.name,
            "?" if m.size_bytes is None else f"~{gib(m.size_bytes):.1f}",
            "?" if m.kv_bytes is None else f"~{gib(m.kv_bytes):.1f}",
            share,
            "-" if m.tokens_per_s is None else f"{m.tokens_per_s:g}",
            "?"
            if m.aggregate_tokens_per_s is None
            else _tilde(m.speed_source != "history", m.aggregate_tokens_per_s, 1),
        )
    return table
