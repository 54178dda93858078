"""Finding and reading the config file, without validating it (that is
:func:`gen_service.config.load_config`'s job).

Free of pydantic on purpose: ``gen-service status`` needs two facts from the config, where the
database is and the order of the data types, and must answer within 200 ms as a whole process
(SPEC §9.5); building the validated config tree costs more than that in imports alone. Reading
only those two facts also keeps ``status`` working while the file on disk holds an edit that
the running service refused (SIGHUP keeps the old config): the progress stays visible."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gen_service.errors import ConfigError

DEFAULT_CONFIG_PATHS = (Path("gen-service.toml"), Path("/etc/gen-service/gen-service.toml"))
DEFAULT_DB = Path("samples.db")  # [service] db when the key is absent


def find_config(explicit: Path | None) -> Path:
    """The config path to use: the one given, else ./gen-service.toml, else /etc/..."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"{explicit}: no such config file. Fix: pass the path of an existing TOML "
                "file to --config, or write a starter config with `gen-service init`.",
                path=str(explicit),
            )
        return explicit
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "no config file found: looked for ./gen-service.toml and "
        "/etc/gen-service/gen-service.toml. Fix: pass --config PATH, or write a starter "
        "config with `gen-service init` (Ollama) or `gen-service init --backend embedded` "
        "(the embedded model, no GPU)."
    )


def read_toml(path: Path) -> dict[str, Any]:
    """The file's TOML document; a ConfigError that quotes the bad line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the config file ({exc.strerror}). Fix: check the path and "
            "its permissions.",
            path=str(path),
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"line (\d+)", str(exc))
        quoted = ""
        if where:
            lines = text.splitlines()
            number = int(where.group(1))
            if 0 < number <= len(lines):
                quoted = f" ({lines[number - 1].strip()!r})"
        raise ConfigError(
            f"{path}: not valid TOML: {exc}{quoted}. Fix: correct the syntax at that line "
            "(strings need quotes, tables [name], arrays of tables [[name]]).",
            path=str(path),
        ) from None


def resolve_path(base: Path, value: Path) -> Path:
    """``~`` expanded; a relative path taken from ``base`` (the config file's folder)."""
    value = Path(os.path.expanduser(value))
    return value if value.is_absolute() else base / value


@dataclass(frozen=True, slots=True)
class StatusFacts:
    """What ``status`` needs from a config file: the database and the data types' order."""

    source: Path
    db: Path
    datatypes: Mapping[str, object]  # the configured types, in the file's order


def read_status_facts(path: Path) -> StatusFacts:
    """Read ``[service] db`` and the ``[datatypes.*]`` table names, checking only those."""
    raw = read_toml(path)
    service = raw.get("service", {})
    db: object = service.get("db", str(DEFAULT_DB)) if isinstance(service, dict) else None
    if not isinstance(db, str) or not db:
        raise ConfigError(
            f"{path}: [service] db: {db!r} is not a path. Fix: write the database's path as a "
            'string, e.g. db = "samples.db"',
            path=str(path),
            key="[service] db",
        )
    datatypes = raw.get("datatypes", {})
    return StatusFacts(
        source=path,
        db=resolve_path(path.resolve().parent, Path(db)),
        datatypes=dict.fromkeys(datatypes) if isinstance(datatypes, dict) else {},
    )
