"""The live state file: what the running service is doing now, for ``gen-service status``.

``status`` reads the database read-only, and some of what an operator needs is not in it: the
phase and model right now, and whether the service is paused and why (a backend outage, a full
disk). The service keeps that in a small JSON file beside the database, ``<db>.state``.

It must be writable when the disk is full, which is exactly when it matters: so the file is
created at a fixed size (:data:`SIZE` bytes, padded with spaces) while there is room, and every
update rewrites those same bytes in place with one ``pwrite`` and an ``fsync``, which needs no
new disk blocks. One ``pwrite`` of a few KiB is seen whole by readers on Linux; a reader that
still catches a torn file (or the JSON of a crashed run) gets None, never garbage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SIZE = 4096


def state_path(db: Path) -> Path:
    return db.with_name(db.name + ".state")


class StateFile:
    """The service's side: create once, then rewrite in place."""

    def __init__(self, db: Path) -> None:
        self.path = state_path(db)
        self._fd: int | None = None

    def open(self) -> None:
        """Create (or reuse) the file at its fixed size; an OSError here is a start-up
        problem the caller reports."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != SIZE:
                os.ftruncate(fd, 0)
                os.pwrite(fd, b" " * SIZE, 0)
                os.fsync(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def write(self, state: dict[str, Any]) -> bool:
        """Replace the content; False (and the old content kept) when it cannot be written."""
        if self._fd is None:
            return False
        data = json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) > SIZE - 1:
            short = {k: _shorten(v) for k, v in state.items() if k in _ESSENTIAL}
            short["truncated"] = True
            data = json.dumps(short, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            os.pwrite(self._fd, data + b"\n" + b" " * (SIZE - len(data) - 1), 0)
            os.fsync(self._fd)
        except OSError:
            return False
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_ESSENTIAL = ("pid", "run_id", "phase", "model", "paused", "updated_at")


def _shorten(value: Any) -> Any:
    """Strings cut to 300 characters, recursively: the essential fields always fit."""
    if isinstance(value, str):
        return value[:300]
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    return value


def read_state(db: Path) -> dict[str, Any] | None:
    """The state the service last wrote beside ``db``; None without a readable one."""
    try:
        text = state_path(db).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        value = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
