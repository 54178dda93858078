"""VRAM arithmetic for model residency (SPEC §4): what a loaded model needs, whether it fits.

Pure functions, no I/O. A model served by Ollama takes its weights (the size ``/api/tags`` and
``/api/show`` report) plus a KV cache that Ollama allocates up front for ``num_ctx`` tokens in
each of ``num_parallel`` slots. What does not fit in VRAM is not an error: Ollama offloads the
remaining layers to the CPU and the model runs, slower (SPEC §10), so :func:`estimate_residency`
gives the share expected on the GPU rather than a yes/no.

Sizes are bytes; "GB" in messages means GiB (2**30 bytes), the unit nvidia-smi's MiB and
``[gpu] vram_gb`` are read in.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30

F16_BYTES = 2

DEFAULT_KV_BYTES_PER_TOKEN = 128 * 1024
"""KV cache per token of context per slot, at f16.

Per token a transformer keeps one K and one V vector per layer and per KV head:
``2 x layers x kv_heads x head_dim x 2 bytes`` (see :func:`kv_bytes_per_token`). With grouped-
query attention (GQA) the KV heads are few, so models from 8B to 32B land near 100-260 KiB:

=================  ======  ========  ========  ==========
model              layers  kv heads  head dim  per token
=================  ======  ========  ========  ==========
Llama 3 8B         32      8         128       128 KiB
Qwen3 8B           36      8         128       144 KiB
Qwen3 30B-A3B      48      4         128        96 KiB
Qwen3 32B          64      8         128       256 KiB
=================  ======  ========  ========  ==========

128 KiB is the middle of that range, over the mark for the memo's workhorse qwen3:30b-a3b (its
MoE experts share a small attention), about right for the 8B models, and half the truth for
qwen3:32b: pass ``bytes_per_token`` from :func:`kv_bytes_per_token` where the architecture is
known. Ollama's ``OLLAMA_KV_CACHE_TYPE=q8_0`` halves every figure, so the default errs on the
side of "does not fit" for a server set up that way.
"""


def kv_bytes_per_token(
    layers: int, kv_heads: int, head_dim: int, *, bytes_per_element: int = F16_BYTES
) -> int:
    """KV cache per token for one slot: a K and a V vector per layer and KV head."""
    return 2 * layers * kv_heads * head_dim * bytes_per_element


def kv_cache_bytes(
    num_ctx: int, num_parallel: int, *, bytes_per_token: int = DEFAULT_KV_BYTES_PER_TOKEN
) -> int:
    """The KV cache a server allocates for ``num_ctx`` tokens in each of ``num_parallel`` slots.

    The default ``bytes_per_token`` (128 KiB, f16) is a conservative middle for 8B-32B models
    with grouped-query attention; :data:`DEFAULT_KV_BYTES_PER_TOKEN` explains the figure.
    """
    if num_ctx < 0 or num_parallel < 0 or bytes_per_token < 0:
        raise ValueError("num_ctx, num_parallel and bytes_per_token must not be negative")
    return num_ctx * num_parallel * bytes_per_token


def fits(model_bytes: int, kv_bytes: int, budget_bytes: int) -> bool:
    """Whether the weights and the KV cache together fit in the budget."""
    return model_bytes + kv_bytes <= budget_bytes


@dataclass(frozen=True, slots=True)
class ResidencyEstimate:
    """What one model is expected to take once loaded, against the VRAM budget."""

    model: str
    size_bytes: int  # the weights
    kv_bytes: int  # the KV cache for num_ctx x num_parallel
    total_bytes: int  # size_bytes + kv_bytes
    budget_bytes: int  # VRAM the scheduler may fill (total VRAM less the reserve)
    gpu_share: float  # expected share on the GPU, 0..1; below 1 the rest runs on the CPU

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.budget_bytes


def estimate_residency(
    model: str, size_bytes: int, kv_bytes: int, budget_bytes: int
) -> ResidencyEstimate:
    """The residency estimate of ``model``; gpu_share is ``min(1, budget / total)``."""
    total = size_bytes + kv_bytes
    budget = max(0, budget_bytes)
    share = 1.0 if total <= 0 else min(1.0, budget / total)
    return ResidencyEstimate(model, size_bytes, kv_bytes, total, budget, share)


def gib(n_bytes: int | float) -> float:
    """Bytes in GiB, the "GB" of every message."""
    return n_bytes / GIB
