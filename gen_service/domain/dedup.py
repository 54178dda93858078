"""Duplicate detection (pure): the exact content hash, and MinHash signatures for near-copies.

**Exact copies**: :func:`content_hash` of the canonical JSON of a sample's prose.

**Near-copies**: each sample's prose (its type's ``text_for_dedup``) becomes a set of word
3-shingles, and the set a datasketch MinHash signature of :data:`NUM_PERM` 32-bit values
(its permutations and "affine32" scheme, with CRC-32 as the shingle hash; vectorised with
numpy). Two signatures agree on a share of their values that estimates the Jaccard similarity
of the two shingle sets (:func:`jaccard`). Locality-sensitive hashing finds candidates without
comparing with every sample: the signature's first :data:`LSH_PERM` values are cut into ``b``
bands of ``r`` and each band hashed to one 32-bit fingerprint (:func:`band_fingerprints`); two
samples that share one are candidates. ``b`` and ``r`` come from datasketch's optimiser for
the *cluster* threshold (the looser one), so every pair at the duplicate threshold is found
too. Where the fingerprints are kept and queried is the store's business (an in-memory index
rebuilt from the stored signatures at start: ``adapters/store/near_index.py``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

NUM_PERM = 128
# What a stored signature was computed with; signatures stored under another scheme are
# computed again from their samples when the index is built (adapters/store/near_index.py).
SIGNATURE_SCHEME = "minhash:128:seed1:affine32:crc32:word3"
# The bands are cut from the signature's first LSH_PERM values (the similarity is estimated on
# all NUM_PERM): at the default cluster threshold 0.5 that is 14 bands of 4 rows, which find a
# pair at similarity 0.5 / 0.6 / 0.85 with probability 0.59 / 0.86 / 1.00 (25 bands of 5 over
# all 128: 0.55 / 0.87 / 1.00) and keep the in-memory index at 14 fingerprints per sample.
LSH_PERM = 64
SEED = 1  # fixed: signatures stored in the database stay comparable across restarts
SHINGLE = 3  # words per shingle

# json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False), one encoder for all.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def canonical(value: Any) -> Any:
    """Content with cosmetic differences removed: key order, case, spacing, float noise."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, str):
        # str.split() splits at runs of the whitespace \s matches: _SPACE.sub(" ", value).strip()
        return " ".join(value.split()).casefold()
    if isinstance(value, float):
        return round(value, 3)
    return value


def content_hash(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``value`` (a sample's dedup text, or any JSON
    value); equal for exact duplicates."""
    text = _CANONICAL_JSON(canonical(value))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- near-copies ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _template() -> MinHash:
    # Building the permutations costs more than hashing a sample; every signature reuses them.
    return MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=zlib.crc32)


def shingles(text: str) -> list[bytes]:
    """The word 3-shingles of ``text`` (lowercased; a text of fewer words is one shingle)."""
    found = _WORD.findall(text)
    if not found:
        return [b""]
    # Case folding maps each character on its own: fold the words joined by a NUL (in no
    # word, folded to itself) and split again. A word holds no space, so a shingle is three
    # words joined by one. Each step runs over the whole list in C (map, zip, join).
    words = "\0".join(found).casefold().encode().split(b"\0")
    if len(words) <= SHINGLE:
        return [b" ".join(words)]
    return list(map(b" ".join, zip(words, words[1:], words[2:], strict=False)))


# The MurmurHash3 finalizer on 32-bit values, as datasketch's "affine32" scheme pre-mixes.
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


def signatures(texts: Sequence[str]) -> list[np.ndarray[Any, np.dtype[np.uint32]]]:
    """The MinHash signature of each text's shingle set, all in one pass: what datasketch's
    ``MinHash(num_perm=NUM_PERM, seed=SEED, hashfunc=zlib.crc32).update_batch(shingles(text))``
    gives ("affine32": each shingle's CRC-32, the MurmurHash3 finalizer, then ``a * h + b``
    modulo 2**32 per permutation, the minimum over the shingles), without a MinHash object per
    text (tests/domain/test_schema_and_dedup.py holds the two equal). CRC-32 rather than
    datasketch's default SHA-1: it runs in C over the whole list (a fifth of the time), and
    the finalizer mixes its bits as it mixes SHA-1's."""
    if not texts:
        return []
    groups = [shingles(text) for text in texts]
    hv = np.fromiter(
        map(zlib.crc32, itertools.chain.from_iterable(groups)),
        dtype=np.uint32,
        count=sum(map(len, groups)),
    )
    shift1, mult1, shift2, mult2 = _FMIX32
    hv = hv ^ (hv >> shift1)
    hv = hv * mult1
    hv = hv ^ (hv >> shift2)
    hv = hv * mult2
    hv = hv ^ (hv >> shift1)
    # (permutations x shingles), so each text's shingles are one contiguous run per row and
    # reduceat walks memory in order (the other layout is ~20x slower); computed in
    # place, uint32 arithmetic wrapping modulo 2**32.
    a, b = _permutations()
    permuted = np.multiply(a, hv[np.newaxis, :])
    np.add(permuted, b, out=permuted)
    starts = np.cumsum([0] + [len(group) for group in groups[:-1]])
    lowest = np.minimum.reduceat(permuted, starts, axis=1)  # every group holds one shingle
    return [np.ascontiguousarray(column, dtype=np.uint32) for column in lowest.T]


@functools.lru_cache(maxsize=1)
def _permutations() -> tuple[np.ndarray[Any, np.dtype[np.uint32]], ...]:
    """The template's permutation parameters ``a`` and ``b`` as uint32 columns."""
    a, b = _template().permutations
    return (a.astype(np.uint32).reshape(-1, 1), b.astype(np.uint32).reshape(-1, 1))


def signature(text: str) -> np.ndarray[Any, np.dtype[np.uint32]]:
    """The MinHash signature of ``text``'s shingle set: NUM_PERM 32-bit values."""
    return signatures([text])[0]


def signature_bytes(text: str) -> bytes:
    return signature(text).tobytes()


def signatures_bytes(texts: Sequence[str]) -> list[bytes]:
    """:func:`signatures`, as the bytes the store keeps."""
    return [values.tobytes() for values in signatures(texts)]


def from_bytes(blob: bytes) -> np.ndarray[Any, np.dtype[np.uint32]]:
    values: np.ndarray[Any, np.dtype[np.uint32]] = np.frombuffer(blob, dtype=np.uint32)
    return values


def jaccard(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """The Jaccard similarity two signatures estimate: the share of values they agree on."""
    return float(np.count_nonzero(a == b)) / len(a)


@dataclass(frozen=True, slots=True)
class Banding:
    """How signatures are cut for LSH: ``bands`` of ``rows`` values each."""

    bands: int
    rows: int


@functools.lru_cache(maxsize=8)
def banding(threshold: float) -> Banding:
    """datasketch's optimal bands and rows for ``threshold`` (false positives and negatives
    weighted equally) over the signature's first :data:`LSH_PERM` values."""
    lsh = MinHashLSH(threshold=threshold, num_perm=LSH_PERM)
    return Banding(int(lsh.b), int(lsh.r))


# splitmix64's constants: a band's values folded into one 64-bit word, then mixed.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)


def band_fingerprints(values: np.ndarray[Any, Any], layout: Banding) -> np.ndarray[Any, Any]:
    """One 32-bit fingerprint per band of each signature, for a (samples x NUM_PERM) matrix
    of signatures (or one signature): a (samples x bands) uint32 matrix. Two samples whose
    signatures agree on a band's ``rows`` values share its fingerprint (and, by chance, one
    pair in 2**32 that do not: candidates are confirmed on their signatures). The band's
    index is mixed in, so equal values in two bands do not collide. All in numpy, no Python
    step per band."""
    matrix = np.atleast_2d(np.asarray(values, dtype=np.uint32))
    count = matrix.shape[0]
    used = matrix[:, : layout.bands * layout.rows].astype(np.uint64)
    used = used.reshape(count, layout.bands, layout.rows)
    folded = np.empty((count, layout.bands), dtype=np.uint64)
    folded[:] = (np.arange(1, layout.bands + 1, dtype=np.uint64) * _GOLDEN)[np.newaxis, :]
    for row in range(layout.rows):  # uint64 arithmetic wraps modulo 2**64
        folded ^= used[:, :, row]
        folded *= _MIX1
        folded ^= folded >> _S31
    folded ^= folded >> _S30
    folded *= _MIX1
    folded ^= folded >> _S27
    folded *= _MIX2
    folded ^= folded >> _S31
    return (folded >> _S32).astype(np.uint32)
