"""``gen-service init``: a documented starter config written from the shipped ones.

The Ollama starter is the production config (the memo's strategy, ``systemd/gen-service.toml``)
and the embedded one the quickstart config (``quickstart.toml``), both commented key by key.
Two lines change so the file works wherever it is written: the database goes beside the config
file, and ``prompts_dir`` is left unset, which means the prompts shipped with gen-service.
"""

from __future__ import annotations

import re
from pathlib import Path

from gen_service import resources
from gen_service.errors import EXIT_USAGE, ConfigError, GenServiceError

_DB_LINE = re.compile(r'^db = "[^"]*"(.*)$', re.MULTILINE)
_PROMPTS_LINE = re.compile(r"^prompts_dir = .*\n", re.MULTILINE)

_DB_NAMES: dict[resources.StarterKind, str] = {
    "ollama": "samples.db",
    "embedded": "data/samples.db",
}


class TargetExists(GenServiceError):
    """The file init would write exists already."""

    exit_code = EXIT_USAGE


def starter_text(kind: resources.StarterKind) -> str:
    """The starter config for ``kind``, ready to be written anywhere."""
    text = resources.starter_config(kind).read_text(encoding="utf-8")
    db = _DB_NAMES[kind]
    text, replaced = _DB_LINE.subn(
        f'db = "{db}"' + "  # beside this file; relative paths resolve against its folder",
        text,
        count=1,
    )
    if not replaced:
        raise ConfigError("the shipped config has no [service] db line; reinstall gen-service")
    text = _PROMPTS_LINE.sub("", text, count=1)
    header = (
        f"# Written by `gen-service init --backend {kind}`. Check it after an edit with\n"
        "# `gen-service check-config PATH`; the README's Configuration section lists every key.\n"
        "# prompts_dir is unset: the prompts shipped with gen-service are used. Set it to a\n"
        "# folder of your own (system.j2, <type>.j2, examples/<type>.jsonl) to edit them.\n\n"
    )
    return header + text


def write_starter(path: Path, kind: resources.StarterKind, *, force: bool = False) -> Path:
    """Write the starter config to ``path``; never overwrite without ``force``."""
    if path.exists() and not force:
        raise TargetExists(
            f"{path} exists already; gen-service init does not overwrite it. Fix: choose "
            "another path, or pass --force to replace it."
        )
    if path.is_dir():
        raise TargetExists(f"{path} is a folder. Fix: give the path of a file to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(starter_text(kind), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}. Fix: choose a folder you can write.",
            path=str(path),
        ) from None
    return path
