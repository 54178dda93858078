"""GPU facts from nvidia-smi, when there is one (the service works without)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GpuReading:
    total_gb: float
    used_gb: float
    utilization_pct: float


def read_gpu(timeout_s: float = 5.0) -> GpuReading | None:
    """The first GPU's memory and utilization, or None without nvidia-smi or a GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [
                exe,
                "--query-gpu=memory.total,memory.used,utilization.gpu",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
        total, used, util = (float(x) for x in out.splitlines()[0].split(","))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return GpuReading(total / 1024, used / 1024, util)


def vram_budget_bytes(vram_gb: float | None, reserve_gb: float) -> int | None:
    """The VRAM the scheduler may fill: the configured size (else nvidia-smi's) less the
    reserve; None when neither is known."""
    total = vram_gb
    if total is None:
        reading = read_gpu()
        total = reading.total_gb if reading else None
    if total is None:
        return None
    return max(0, int((total - reserve_gb) * 2**30))
