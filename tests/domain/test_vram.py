"""VRAM arithmetic: KV cache size, fit, and the expected GPU share of a model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gen_service.domain.vram import (
    DEFAULT_KV_BYTES_PER_TOKEN,
    GIB,
    ResidencyEstimate,
    estimate_residency,
    fits,
    gib,
    kv_bytes_per_token,
    kv_cache_bytes,
)

QWEN3_30B_A3B = 18_556_700_000  # bytes, as Ollama lists it


def test_kv_cache_grows_with_context_and_slots() -> None:
    """The KV cache is num_ctx x num_parallel x bytes per token."""
    assert kv_cache_bytes(8192, 1) == 8192 * 128 * 1024 == GIB
    assert kv_cache_bytes(8192, 4) == 4 * GIB
    assert kv_cache_bytes(4096, 4, bytes_per_token=32 * 1024) == 512 * 2**20
    assert kv_cache_bytes(0, 4) == 0


def test_kv_cache_refuses_negative_sizes() -> None:
    """A negative context or slot count is a programming error, not a small cache."""
    with pytest.raises(ValueError, match="negative"):
        kv_cache_bytes(-1, 4)


def test_default_bytes_per_token_is_a_gqa_model_at_f16() -> None:
    """The 128 KiB default is Llama-3-8B's exact figure and sits between Qwen3's models."""
    assert kv_bytes_per_token(32, 8, 128) == DEFAULT_KV_BYTES_PER_TOKEN  # Llama 3 8B
    assert kv_bytes_per_token(48, 4, 128) == 96 * 1024  # Qwen3 30B-A3B
    assert kv_bytes_per_token(36, 8, 128) == 144 * 1024  # Qwen3 8B
    assert kv_bytes_per_token(64, 8, 128) == 256 * 1024  # Qwen3 32B
    assert kv_bytes_per_token(32, 8, 128, bytes_per_element=1) == 64 * 1024  # q8_0 cache


def test_fits_counts_weights_and_cache_against_the_budget() -> None:
    """A model fits when weights + KV cache are at most the budget, boundary included."""
    assert fits(6 * GIB, 2 * GIB, 8 * GIB)
    assert not fits(6 * GIB, 2 * GIB + 1, 8 * GIB)
    assert not fits(QWEN3_30B_A3B, kv_cache_bytes(8192, 4), int(11.5 * GIB))


def test_estimate_of_an_oversized_model_gives_its_gpu_share() -> None:
    """qwen3:30b-a3b with 4 slots of 8k context on a 12 GB card runs about half on the GPU."""
    kv = kv_cache_bytes(8192, 4)
    budget = int(11.5 * GIB)
    estimate = estimate_residency("qwen3:30b-a3b", QWEN3_30B_A3B, kv, budget)
    assert estimate == ResidencyEstimate(
        "qwen3:30b-a3b",
        QWEN3_30B_A3B,
        kv,
        QWEN3_30B_A3B + kv,
        budget,
        budget / (QWEN3_30B_A3B + kv),
    )
    assert not estimate.fits
    assert estimate.gpu_share == pytest.approx(0.54, abs=0.01)
    assert gib(estimate.total_bytes) == pytest.approx(21.28, abs=0.01)


def test_estimate_of_a_fitting_model_is_all_on_the_gpu() -> None:
    """A model inside the budget has share 1, never more."""
    estimate = estimate_residency("qwen3:8b", 5_225_400_000, GIB, 20 * GIB)
    assert estimate.fits
    assert estimate.gpu_share == 1.0


def test_estimate_with_no_budget_left_is_all_on_the_cpu() -> None:
    """A reserve larger than the card (negative budget) leaves nothing on the GPU."""
    estimate = estimate_residency("m", GIB, 0, -GIB)
    assert estimate.budget_bytes == 0
    assert estimate.gpu_share == 0.0
    assert estimate_residency("empty", 0, 0, 0).gpu_share == 1.0


SIZES = st.integers(min_value=0, max_value=200 * GIB)


@given(size=SIZES, kv=SIZES, budget=SIZES)
def test_gpu_share_is_a_fraction_that_is_whole_exactly_when_it_fits(
    size: int, kv: int, budget: int
) -> None:
    """For any sizes the share lies in [0, 1], is 1 exactly when the model fits, and agrees
    with fits()."""
    estimate = estimate_residency("m", size, kv, budget)
    assert 0.0 <= estimate.gpu_share <= 1.0
    assert estimate.fits == fits(size, kv, budget)
    # Below 2**53 bytes, budget / total for total = budget + 1 is still < 1.0 as a float.
    assert (estimate.gpu_share == 1.0) == estimate.fits
