"""``gen-service models pull|list`` (SPEC §3, §6).

``pull`` fetches every model the config names through the backend's pull verb (Ollama's
``/api/pull``), one progress bar per model; it needs a backend that can pull
(:func:`~gen_service.adapters.backend.puller`), which only ollama can. ``list`` shows what the
backend offers beside what the config asks for: roles, sizes, what is resident now and how much
of it is on the GPU, and which configured models are missing.

Exit codes: 0 all pulled; 64 (EX_USAGE) the backend cannot pull; 69 (EX_UNAVAILABLE) some
pull failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console, JustifyMethod
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from gen_service.adapters.backend import Backend, Puller, puller
from gen_service.config import Config
from gen_service.domain.vram import gib
from gen_service.errors import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, BackendDown, BackendError

NOT_OLLAMA = (
    "models pull needs the ollama backend; for openai servers pull models on the server, for "
    "llamacpp point [models.X].path at a GGUF"
)


# -- pull ------------------------------------------------------------------------------------


async def pull_models(cfg: Config, backend: Backend, console: Console) -> int:
    """Pull each distinct configured model through ``backend``, showing a progress bar per
    model; 0 if all succeeded, 69 if any failed, 64 if the backend cannot pull.

    ``backend`` is any Backend, so that the CLI can hand over whatever the config opened and
    get the usage message, not a type error, for the kinds that cannot pull.
    """
    pulling = puller(backend)
    if pulling is None:
        console.print(
            f"{NOT_OLLAMA} (this config uses backend kind {backend.kind!r}).", markup=False
        )
        return EXIT_USAGE
    names = list(dict.fromkeys(m.name for m in cfg.models.values()))
    failures: dict[str, str] = {}
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TextColumn("{task.fields[status]}", markup=False),
        console=console,
    )
    with progress:
        tasks = {name: progress.add_task(name, total=None, status="waiting") for name in names}
        for index, name in enumerate(names):
            try:
                await _pull_one(pulling, name, progress, tasks[name])
            except BackendError as exc:
                failures[name] = str(exc)
                progress.update(tasks[name], status="failed")
                if isinstance(exc, BackendDown):
                    for rest in names[index + 1 :]:
                        failures[rest] = "not tried: Ollama is not reachable"
                        progress.update(tasks[rest], status="not tried")
                    break
    for name in names:
        if name in failures:
            console.print(f"✗ {name}: {failures[name]}", markup=False, highlight=False)
        else:
            console.print(f"✓ {name} pulled", markup=False, highlight=False)
    if failures:
        console.print(
            f"{len(failures)} of {len(names)} models failed to pull; fix the names in the "
            "[models] tables (tags are listed at https://ollama.com/library) or start Ollama, "
            "then run `gen-service models pull` again.",
            markup=False,
            highlight=False,
        )
        return EXIT_UNAVAILABLE
    return EXIT_OK


async def _pull_one(backend: Puller, name: str, progress: Progress, task: TaskID) -> None:
    """Drive one model's bar from its /api/pull events: total/completed per layer digest, the
    status text otherwise. Raises BackendError when the pull does not end in "success"."""
    layers: dict[str, tuple[int, int]] = {}  # digest -> (total, completed)
    status = ""
    async for event in backend.pull(name):
        status = str(event.get("status") or "")
        total = event.get("total")
        if isinstance(total, int) and total > 0:
            digest = str(event.get("digest") or status)
            completed = event.get("completed")
            layers[digest] = (total, completed if isinstance(completed, int) else 0)
            progress.update(
                task,
                total=sum(t for t, _ in layers.values()),
                completed=sum(c for _, c in layers.values()),
                status=_short(status),
            )
        else:
            progress.update(task, status=_short(status))
    if status != "success":
        raise BackendError(
            f"the pull of {name} ended without success (last status: {status or 'none'})"
        )
    total_bytes = sum(t for t, _ in layers.values())
    progress.update(task, total=total_bytes or 1, completed=total_bytes or 1, status="done")


def _short(status: str) -> str:
    """Ollama's "pulling 6e4c38e1172f…" with the full digest cut to 12 hex digits."""
    head, _, digest = status.rpartition(" ")
    if digest.startswith("sha256:"):
        return f"{head} {digest.removeprefix('sha256:')[:12]}"
    return status


# -- list ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One model as the backend and the config see it."""

    name: str
    roles: tuple[str, ...]  # config roles that name it; empty: not configured
    size_gb: float | None  # weights on disk (GiB); None: the backend does not say
    resident: bool  # loaded now
    size_vram_gb: float | None  # its part on the GPU now; None: not resident or unknown
    gpu_share: float | None  # size_vram / size while resident; None: not resident or unknown
    missing: bool  # configured, but the backend does not have it

    @property
    def roles_text(self) -> str:
        return ", ".join(self.roles) or "-"


async def list_models(cfg: Config, backend: Backend) -> list[ModelRow]:
    """Configured models first (config order), then the others the backend has, by name;
    raises BackendError when the backend cannot be asked."""
    key = backend.canonical_name
    available = {key(m.name): m for m in await backend.list_models()}
    loaded = {key(m.name): m for m in await backend.loaded()}
    roles: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for role, model in cfg.models.items():
        roles.setdefault(key(model.name), []).append(role)
        names.setdefault(key(model.name), model.name)
    for k in sorted({*available, *loaded} - set(names)):
        names[k] = available[k].name if k in available else loaded[k].name
    rows: list[ModelRow] = []
    for k, name in names.items():
        info = available.get(k)
        resident = loaded.get(k)
        known = resident is not None and resident.size_bytes > 0
        rows.append(
            ModelRow(
                name=name,
                roles=tuple(roles.get(k, ())),
                size_gb=gib(info.size_bytes) if info is not None and info.size_bytes else None,
                resident=resident is not None,
                size_vram_gb=gib(resident.vram_bytes) if resident is not None and known else None,
                gpu_share=resident.gpu_share if resident is not None and known else None,
                missing=k in roles and info is None,
            )
        )
    return rows


def render_models(rows: Sequence[ModelRow], console: Console) -> None:
    """Print the rows as a table, and a hint when configured models are missing."""
    table = Table(title="models")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("model", "left"),
        ("roles", "left"),
        ("size", "right"),
        ("loaded", "center"),
        ("VRAM", "right"),
        ("on GPU", "right"),
        ("state", "left"),
    )
    for header, justify in columns:
        table.add_column(header, justify=justify)
    for row in rows:
        state = (
            Text("missing", style="bold red")
            if row.missing
            else Text("loaded", style="green")
            if row.resident
            else Text("available")
        )
        table.add_row(
            Text(row.name),
            Text(row.roles_text),
            _gb(row.size_gb),
            "yes" if row.resident else "-",
            _gb(row.size_vram_gb),
            f"{row.gpu_share:.0%}" if row.gpu_share is not None else "-",
            state,
        )
    console.print(table)
    missing = [row.name for row in rows if row.missing]
    if missing:
        console.print(
            f"configured but missing: {', '.join(missing)}; with Ollama run "
            "`gen-service models pull`",
            markup=False,
            highlight=False,
        )


def _gb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} GB"
