"""``gen-service doctor``: check, before a run, everything a run needs (SPEC §6, §7).

One :class:`Check` per line: the config, the database, the backend, and for each model role a
data type or the judge uses: is the model there, can it think where a data type asks it to, and
does it fit the VRAM budget. Checks only look; the one thing they may write is a new, empty
database file, which they remove again.

Exit codes (:func:`exit_code`), from ``sysexits.h`` as in :mod:`gen_service.errors`:

- 0  no check failed with severity ``error`` (warnings and infos do not fail the doctor);
- 78 (EX_CONFIG) the config or the database is wrong: the fix is in the config file or on disk;
- 69 (EX_UNAVAILABLE) otherwise: the backend is down, or a configured model is missing or
  cannot be described. When both kinds fail, 78 wins: the config is fixed first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio.to_thread

from gen_service.adapters.backend import Backend, ModelInfo, ModelMemory, ThinkingSwitch
from gen_service.adapters.gpu import read_gpu
from gen_service.adapters.prompt_files import load_prompt_library
from gen_service.adapters.store import Store
from gen_service.config import Config, ModelConfig
from gen_service.domain.vram import estimate_residency, gib, kv_cache_bytes
from gen_service.errors import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    BackendError,
    ConfigError,
    ModelNotFound,
    StoreError,
)
from gen_service.service.fit_check import batch_fit_warnings

Severity = Literal["error", "warning", "info"]

CONFIG = "config"
DATABASE = "database"
BACKEND = "backend"
GPU = "gpu"
MODELS = "models"
_CONFIG_CHECKS = frozenset({CONFIG, DATABASE})

_NVIDIA_SMI_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    severity: Severity = "error"  # how much a failure matters; infos never fail


# -- the checks ------------------------------------------------------------------------------


async def run_doctor(cfg: Config, backend: Backend) -> list[Check]:
    """Run every check against the loaded config and the opened backend, in report order."""
    checks = [_config_check(cfg), *_fit_checks(cfg), await _database_check(cfg.service.db)]
    backend_check = await _backend_check(backend)
    checks.append(backend_check)
    if not backend_check.ok:
        checks.append(
            Check(MODELS, True, "not checked: the backend is not reachable", severity="info")
        )
        return checks
    budget = await _vram_budget_check(cfg, backend.capabilities.memory)
    if budget is not None:
        checks.append(budget[0])
    described: dict[str, tuple[Check, ModelInfo | None]] = {}
    for role, model in _roles_in_use(cfg).items():
        if model.name not in described:
            described[model.name] = await _presence_check(backend, role, model)
        present, info = described[model.name]
        checks.append(dataclasses.replace(present, name=f"model {role}"))
        if info is None:
            continue  # missing: its capabilities and size are unknown
        thinking = _thinking_check(cfg, role, info, backend.capabilities.thinking)
        if thinking is not None:
            checks.append(thinking)
        memory = _memory_check(
            cfg, role, model, info, backend.capabilities.memory, budget[1] if budget else None
        )
        if memory is not None:
            checks.append(memory)
    return checks


def _config_check(cfg: Config) -> Check:
    source = str(cfg.source) if cfg.source is not None else "(built in code)"
    phases = len(cfg.schedule.phases)
    return Check(
        CONFIG,
        True,
        f"{source}: valid; {cfg.schedule.mode} schedule with {phases} "
        f"phase{'s' if phases != 1 else ''}, {len(cfg.datatypes)} data types, "
        f"{cfg.backend.kind} backend",
    )


def _fit_checks(cfg: Config) -> list[Check]:
    """A warning per data type whose configured batch cannot fit its token budget."""
    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    return [
        Check(f"batch {warning.split(']')[0].removeprefix('[datatypes.')}", False, warning,
              severity="warning")
        for warning in batch_fit_warnings(cfg, library)
    ]  # fmt: skip


async def _database_check(path: Path) -> Check:
    fix = "point [service].db at a file in a folder this user can write"
    try:
        problem = await anyio.to_thread.run_sync(_inspect_database, path)
        created = await anyio.to_thread.run_sync(_missing_ancestors, path)
    except OSError as exc:
        return Check(DATABASE, False, f"{path}: cannot inspect it ({exc})", fix=fix)
    if problem is not None:
        return Check(DATABASE, False, problem, fix=fix)
    try:
        async with Store.open(path):
            pass
    except StoreError as exc:
        return Check(DATABASE, False, _without_fix(str(exc)), fix=fix)
    if not created:
        return Check(DATABASE, True, f"{path}: a gen-service database, opened for writing")
    await anyio.to_thread.run_sync(_remove_created, created)
    return Check(DATABASE, True, f"{path}: does not exist yet; it can be created there")


def _inspect_database(path: Path) -> str | None:
    """What is wrong with ``path`` as the database, before Store.open touches it; None: fine.

    An existing SQLite file of another program is refused here: Store.open would otherwise
    add gen-service's tables to it.
    """
    if path.is_dir():
        return f"{path} is a directory, not a database file"
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"{path} exists but is not a SQLite database ({exc})"
    if version == 0 and tables > 0:
        return f"{path} is a SQLite database of another program (no gen-service schema)"
    return None


def _missing_ancestors(path: Path) -> list[Path]:
    """``path`` and the folders above it that do not exist yet, deepest first: what opening
    the database creates, and what the check removes again."""
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    return missing


def _remove_created(created: list[Path]) -> None:
    """Remove the empty database the check created, its WAL files and the new folders."""
    db = created[0]
    for suffix in ("", "-wal", "-shm", "-journal"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    for folder in created[1:]:
        with contextlib.suppress(OSError):  # not empty: something else was put there meanwhile
            folder.rmdir()


def _without_fix(message: str) -> str:
    """An error message without its own "Fix: ..." sentence, which the check's fix replaces."""
    head, _, _ = message.partition(" Fix: ")
    return head.rstrip()


async def _backend_check(backend: Backend) -> Check:
    health = await backend.health()
    if health.ok:
        version = f" {health.version}" if health.version else ""
        return Check(BACKEND, True, f"{backend.kind}{version} answers at {backend.url}")
    detail = health.detail or f"{backend.kind} at {backend.url} does not answer"
    return Check(BACKEND, False, detail, fix=backend.fix_unreachable())


def _roles_in_use(cfg: Config) -> dict[str, ModelConfig]:
    """The model roles a data type or the judge uses, in config order."""
    used = {dtc.model for dtc in cfg.datatypes.values()}
    if any(p.kind == "validate" for p in cfg.schedule.phases):
        used.add(cfg.validation.model)
    return {role: model for role, model in cfg.models.items() if role in used}


def _present_line(role: str, model: ModelConfig, info: ModelInfo) -> Check:
    facts = ", ".join(
        x
        for x in (
            info.parameter_size,
            info.quantization,
            f"{gib(info.size_bytes):.1f} GB" if info.size_bytes else "",
        )
        if x
    )
    return Check(f"model {role}", True, f"{model.name} present" + (f" ({facts})" if facts else ""))


async def _presence_check(
    backend: Backend, role: str, model: ModelConfig
) -> tuple[Check, ModelInfo | None]:
    name = f"model {role}"
    try:
        info = await backend.describe(model.name)
    except ModelNotFound as exc:
        fix = backend.fix_missing_model(model.name, role)
        return Check(name, False, _without_fix(str(exc)), fix=fix), None
    except ConfigError as exc:  # llamacpp: the GGUF file named by the config is missing
        return Check(name, False, str(exc), fix=f"correct [models.{role}] path"), None
    except BackendError as exc:
        return (
            Check(name, False, f"cannot describe {model.name}: {exc}", fix="check the backend"),
            None,
        )
    return _present_line(role, model, info), info


def _thinking_check(
    cfg: Config, role: str, info: ModelInfo, switch: ThinkingSwitch
) -> Check | None:
    thinkers = sorted(n for n, d in cfg.datatypes.items() if d.model == role and d.think)
    if not thinkers:
        return None
    who = ", ".join(thinkers)
    name = f"thinking {role}"
    if switch is ThinkingSwitch.TEMPLATE_KWARGS:
        return Check(
            name,
            True,
            f"{who}: think is sent as chat_template_kwargs.enable_thinking; a server whose "
            "chat template has no such switch ignores it",
            severity="info",
        )
    # A top-level think goes only to models that list the capability; NONE never sends it.
    if switch is ThinkingSwitch.TOP_LEVEL and "thinking" in info.capabilities:
        return Check(name, True, f"{info.name} can think ({who} set think = true)")
    return Check(
        name,
        False,
        f"{info.name} lacks the thinking capability: think will not be sent for {who}",
        fix=f"set think = false for {who}, or use a model that can think",
        severity="warning",
    )


async def _vram_budget_check(cfg: Config, memory: ModelMemory) -> tuple[Check, int | None] | None:
    """The VRAM budget line and the budget in bytes; None where VRAM does not apply."""
    if memory is ModelMemory.SERVER:
        return (
            Check(
                GPU,
                True,
                "VRAM not checked: the OpenAI-compatible servers manage their own memory",
                severity="info",
            ),
            None,
        )
    if memory is ModelMemory.PROCESS_RAM:
        return None  # in-process: each model line reports RAM instead
    total = cfg.gpu.vram_gb
    source = "[gpu] vram_gb"
    if total is None:
        total = await anyio.to_thread.run_sync(gpu_vram_gb)
        source = "nvidia-smi"
    if total is None:
        return (
            Check(
                GPU,
                True,
                "no GPU budget known: [gpu] vram_gb is unset and nvidia-smi gave no answer; "
                "model sizes are not checked against VRAM",
                fix="set [gpu] vram_gb to the GPU's memory in GB",
                severity="info",
            ),
            None,
        )
    budget = max(0, int((total - cfg.gpu.reserve_gb) * 2**30))
    return (
        Check(
            GPU,
            True,
            f"VRAM budget {gib(budget):.1f} GB ({total:g} GB from {source} less "
            f"{cfg.gpu.reserve_gb:g} GB reserve)",
            severity="info",
        ),
        budget,
    )


def _memory_check(
    cfg: Config,
    role: str,
    model: ModelConfig,
    info: ModelInfo,
    memory: ModelMemory,
    budget: int | None,
) -> Check | None:
    """The model's memory against the budget; None for servers whose memory is their own
    (the gpu line says so once)."""
    name = f"vram {role}"
    if memory is ModelMemory.SERVER:
        return None
    if memory is ModelMemory.PROCESS_RAM:
        # One slot: the embedded backend runs one request at a time per model.
        ram = info.size_bytes + kv_cache_bytes(model.num_ctx, 1)
        return Check(
            name,
            True,
            f"{model.name} takes ~{gib(ram):.1f} GB of RAM with its KV cache (in-process)",
            severity="info",
        )
    slots = cfg.backend.num_parallel
    kv = kv_cache_bytes(model.num_ctx, slots)
    need = f"~{gib(info.size_bytes + kv):.1f} GB with its KV cache"
    if model.num_gpu == 0:
        detail = f"{model.name} needs {need}; num_gpu = 0 keeps it on the CPU"
        return Check(name, True, detail, severity="info")
    if budget is None:
        detail = f"{model.name} needs {need}; no VRAM budget to compare with"
        return Check(name, True, detail, severity="info")
    estimate = estimate_residency(model.name, info.size_bytes, kv, budget)
    if estimate.fits:
        return Check(name, True, f"{model.name} needs {need}; fits the {gib(budget):.1f} GB budget")
    return Check(
        name,
        False,
        f"{model.name} needs {need} (num_ctx {model.num_ctx} x {slots} slots); "
        f"{gib(budget):.1f} GB budget → ~{estimate.gpu_share:.0%} on GPU, expect fewer tokens/s",
        fix="use a smaller quantization, lower num_ctx or num_parallel, or accept CPU offload",
        severity="warning",
    )


def gpu_vram_gb() -> float | None:
    """The first GPU's total memory in GB (GiB) from nvidia-smi; None without one."""
    reading = read_gpu(_NVIDIA_SMI_TIMEOUT_S)
    return reading.total_gb if reading and reading.total_gb > 0 else None


# -- report ----------------------------------------------------------------------------------


def _mark(check: Check) -> str:
    if check.severity == "info":
        return "i"
    if check.ok:
        return "✓"
    return "✗" if check.severity == "error" else "!"


def render_checks(checks: Iterable[Check]) -> str:
    """Plain text: a mark (✓ ok, ✗ error, ! warning, i info), the name and the detail, and an
    indented ``fix:`` line under each failure that has one."""
    checks = list(checks)
    width = max((len(c.name) for c in checks), default=0)
    lines: list[str] = []
    for check in checks:
        lines.append(f"{_mark(check)} {check.name:<{width}}  {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"  {'':<{width}}  fix: {check.fix}")
    return "\n".join(lines)


def exit_code(checks: Iterable[Check]) -> int:
    """0 without an error-severity failure; 78 when the config or the database failed; else 69
    (backend down, model missing). See the module docstring."""
    failed = [c for c in checks if not c.ok and c.severity == "error"]
    if not failed:
        return EXIT_OK
    if any(c.name in _CONFIG_CHECKS for c in failed):
        return EXIT_CONFIG
    return EXIT_UNAVAILABLE
