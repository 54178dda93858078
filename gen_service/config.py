"""The configuration: a frozen pydantic tree that mirrors the TOML tables.

One function loads it (:func:`load_config`); it is validated completely at start and again on
SIGHUP, and every problem becomes a :class:`~gen_service.errors.ConfigError` whose message names
the file, the key and the fix. The format is an interface: keys are added, never renamed. Every
key is documented in the README's "Configuration" section and in the comments of the two shipped
configs (``systemd/gen-service.toml``, ``quickstart.toml``); ``gen-service init`` writes one.

Every accepted key has an effect. A key of the format whose feature is not built yet is listed
in :data:`NOT_BUILT`: accepted at its default, refused (exit 78) at any other value, so an
operator never believes a feature is on when it is not.

The tree itself lives in :mod:`gen_service.config_model`, the checks that span tables and
:data:`NOT_BUILT` in :mod:`gen_service.config_rules`; this module loads a file into the tree,
words its problems for the operator, and warns about what is legal but probably not meant.
Import every name from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gen_service.config_file import DEFAULT_CONFIG_PATHS as DEFAULT_CONFIG_PATHS
from gen_service.config_file import find_config as find_config
from gen_service.config_file import read_toml, resolve_path
from gen_service.config_model import (
    BackendConfig,
    Config,
    DatatypeConfig,
    DedupConfig,
    GpuConfig,
    ModelConfig,
    PhaseConfig,
    ScheduleConfig,
    ServiceConfig,
    ValidationConfig,
    listen_address,
    local_zone,
)

# The base of every table; tests/test_config_honesty.py patches it here.
from gen_service.config_model import Section as _Section  # noqa: F401
from gen_service.config_rules import NOT_BUILT, KeyProblem
from gen_service.errors import ConfigError

__all__ = [
    "DEFAULT_CONFIG_PATHS",
    "NOT_BUILT",
    "BackendConfig",
    "Config",
    "DatatypeConfig",
    "DedupConfig",
    "GpuConfig",
    "ModelConfig",
    "PhaseConfig",
    "ScheduleConfig",
    "ServiceConfig",
    "ValidationConfig",
    "check_templates",
    "config_warnings",
    "find_config",
    "listen_address",
    "load_config",
    "local_zone",
    "parse_config",
]


def config_warnings(cfg: Config, *, cores: int | None = None) -> list[str]:
    """What is legal but probably not what the operator means; printed by check-config and
    logged at start-up. ``cores``: the machine's (``os.cpu_count()`` when not given)."""
    warnings: list[str] = []
    cores = os.cpu_count() if cores is None else cores
    workers = cfg.service.check_workers
    if cores is not None and workers >= cores:
        warnings.append(
            f"[service] check_workers = {workers} on a machine with {cores} CPU core"
            f"{'s' if cores != 1 else ''}: the workers leave no core to the event loop, the "
            f"database writer and a local model server, and wait on each other; at most "
            f"{max(cores - 1, 0)} is useful here (0 checks on the event loop)"
        )
    if any(p.kind == "validate" for p in cfg.schedule.phases):
        judge = cfg.models[cfg.validation.model].name
        same = sorted(d for d, dtc in cfg.datatypes.items() if cfg.models[dtc.model].name == judge)
        if same:
            warnings.append(
                f"[validation] model {judge!r} also writes {', '.join(same)}: a model judging "
                "its own samples is lenient with its own habits; prefer another model"
            )
    return warnings


# -- loading ---------------------------------------------------------------------------------


def load_config(path: Path, *, check_prompts: bool = True) -> Config:
    """Read, validate and resolve one config file; raise ConfigError on any problem."""
    raw = read_toml(path)
    cfg = parse_config(raw, path)
    if check_prompts:
        check_templates(cfg)
    return cfg


def parse_config(raw: Mapping[str, Any], path: Path) -> Config:
    """Validate a parsed TOML document; resolve relative paths against the file's folder."""
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, path) from None
    except KeyProblem as exc:  # pragma: no cover - pydantic wraps these; kept for safety
        raise ConfigError(_format(path, exc.loc, exc.message), path=str(path)) from None
    base = path.resolve().parent
    service = cfg.service.model_copy(
        update={
            "db": resolve_path(base, cfg.service.db),
            "prompts_dir": resolve_path(base, cfg.service.prompts_dir),
            "reports_dir": None
            if cfg.service.reports_dir is None
            else resolve_path(base, cfg.service.reports_dir),
        }
    )
    models = {
        role: m.model_copy(update={"path": resolve_path(base, m.path)}) if m.path else m
        for role, m in cfg.models.items()
    }
    return cfg.model_copy(update={"service": service, "models": models, "source": path})


def check_templates(cfg: Config) -> None:
    """Load the prompt library and render one prompt per configured data type."""
    import random

    from gen_service.adapters.prompt_files import load_prompt_library
    from gen_service.domain.datatypes import REGISTRY

    library = load_prompt_library(cfg.service.prompts_dir, list(cfg.datatypes))
    for name, dtc in cfg.datatypes.items():
        spec = REGISTRY[name]
        rng = random.Random(0)
        library.render(
            spec,
            batch_size=dtc.batch_size,
            contexts=spec.sample_contexts(rng, dtc.batch_size, facets=library.facets),
            rng=rng,
        )


def _toml_key(loc: tuple[str | int, ...]) -> str:
    """('datatypes', 'x', 'batch_size') -> '[datatypes.x] batch_size'."""
    parts = [p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "tagged")))]
    if not parts:
        return "(top level)"
    if len(parts) == 1:
        return str(parts[0])
    table = ""
    for p in parts[:-1]:
        table += f"[{p}]" if isinstance(p, int) else (f".{p}" if table else str(p))
    return f"[{table}] {parts[-1]}"


def _format(path: Path, loc: tuple[str | int, ...], problem: str) -> str:
    return f"{path}: {_toml_key(loc)}: {problem}"


_FIXES = {
    "extra_forbidden": (
        "remove it or correct its spelling (the README's Configuration section lists every key)"
    ),
    "missing": "add it",
    "literal_error": "use one of the allowed values",
    "string_pattern_mismatch": 'write times as "HH:MM" (00:00 to 24:00)',
}


def _config_error(exc: ValidationError, path: Path) -> ConfigError:
    lines: list[str] = []
    first_key: str | None = None
    for err in exc.errors():
        loc: tuple[str | int, ...] = tuple(err["loc"])
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, KeyProblem):
            loc = ctx_error.loc
            message = ctx_error.message
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            elif err["type"] == "missing":
                message = "required key is missing"
            elif "input" in err and not isinstance(err["input"], dict | list):
                message = f"{err['input']!r}: {message}"
            fix = _FIXES.get(err["type"])
            if fix:
                message = f"{message}. Fix: {fix}"
        if first_key is None:
            first_key = _toml_key(loc)
        lines.append(f"{_toml_key(loc)}: {message}")
    head = f"{path}: invalid configuration: " + lines[0]
    if len(lines) > 1:
        head += "; also " + "; ".join(lines[1:])
    return ConfigError(head + ".", path=str(path), key=first_key)
