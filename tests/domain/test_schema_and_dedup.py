"""Batch schemas for constrained decoding, exact-duplicate hashing and MinHash signatures."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from typing import Literal

import numpy as np
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from gen_service.domain import dedup
from gen_service.domain.dedup import content_hash
from gen_service.domain.schema import batch_schema, inline_refs


class Inner(BaseModel):
    level: Literal["low", "high"]


class Outer(BaseModel):
    inner: Inner
    others: list[Inner] = Field(min_length=1, max_length=3)
    score: float = Field(ge=0, le=1)


def _has_ref(node: object) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_has_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_ref(v) for v in node)
    return False


def test_batch_schema_asks_for_exactly_n_items() -> None:
    """The batch schema pins minItems and maxItems to the batch size."""
    schema = batch_schema(Outer, 7)
    array = schema["properties"]["samples"]
    assert (array["minItems"], array["maxItems"]) == (7, 7)
    assert schema["required"] == ["samples"]


def test_refs_are_inlined() -> None:
    """No $ref or $defs survive, so every grammar converter can read the schema."""
    schema = batch_schema(Outer, 2)
    assert not _has_ref(schema)
    assert "$defs" not in str(schema)
    item = schema["properties"]["samples"]["items"]
    assert item["properties"]["inner"]["properties"]["level"]["enum"] == ["low", "high"]
    assert item["properties"]["others"]["items"]["properties"]["level"]["enum"] == ["low", "high"]
    assert item["properties"]["score"]["maximum"] == 1


def test_inline_refs_keeps_sibling_keys() -> None:
    """Keys beside a $ref (such as a description) are kept."""
    schema = {
        "$defs": {"A": {"type": "string"}},
        "properties": {"a": {"$ref": "#/$defs/A", "description": "d"}},
    }
    assert inline_refs(schema)["properties"]["a"] == {"type": "string", "description": "d"}


def test_content_hash_ignores_cosmetic_differences() -> None:
    """Key order, case, spacing and float noise do not change the hash."""
    a = {"text": "Hello   World", "score": 0.50001, "tags": ["A"]}
    b = {"tags": ["a"], "score": 0.5, "text": "hello world"}
    assert content_hash(a) == content_hash(b)


def test_content_hash_sees_real_differences() -> None:
    """A changed word or number changes the hash."""
    assert content_hash({"text": "hello world"}) != content_hash({"text": "hello there"})
    assert content_hash({"score": 0.5}) != content_hash({"score": 0.6})


@given(st.lists(st.text(alphabet=st.sampled_from("ab cdİß’'-.\n日"), max_size=60), max_size=6))
def test_signatures_are_datasketch_minhashes(texts: list[str]) -> None:
    """The bulk signatures are exactly datasketch's MinHash of each text's shingles (CRC-32 as
    its hash function): what the library computes one text at a time."""
    for text, got in zip(texts, dedup.signatures(texts), strict=True):
        m = MinHash(num_perm=dedup.NUM_PERM, seed=dedup.SEED, hashfunc=zlib.crc32)
        m.update_batch(dedup.shingles(text))
        assert got.dtype == np.uint32 and got.tolist() == m.hashvalues.tolist()
        assert dedup.signature(text).tobytes() == got.tobytes()


def test_shingles_are_lowercased_word_triples() -> None:
    """Words are case-folded one by one; fewer than four words make one shingle."""
    assert dedup.shingles("") == [b""]
    assert dedup.shingles("Straße, İt's") == [
        " ".join(("straße".casefold(), "İt's".casefold())).encode()
    ]
    assert dedup.shingles("a B c D") == [b"a b c", b"b c d"]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_content_hash_of_a_text_is_the_hash_stored_before(text: str) -> None:
    """Exact duplicates are found against hashes already in the database: a text's hash stays
    the SHA-256 of its JSON with runs of whitespace made one space, stripped and case-folded."""
    folded = re.sub(r"\s+", " ", text).strip().casefold()
    expected = hashlib.sha256(json.dumps(folded, ensure_ascii=False).encode()).hexdigest()
    assert content_hash(text) == expected
