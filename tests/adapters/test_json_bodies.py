"""Request and answer bodies as JSON (adapters/_http.py): orjson, with the standard library's
reading and writing where orjson refuses."""

from __future__ import annotations

import json

import httpx
import pytest

from gen_service.adapters._http import encode_json, json_object
from gen_service.errors import BackendUnavailable


def test_a_body_with_a_byte_order_mark_is_read() -> None:
    """httpx's own decoding reads a UTF-8 BOM and UTF-16; so do answers here."""
    for content in (b'\xef\xbb\xbf{"a": 1}', '{"a": 1}'.encode("utf-16")):
        assert json_object(httpx.Response(200, content=content), "server") == {"a": 1}


def test_a_body_that_is_not_json_is_a_retryable_fault() -> None:
    with pytest.raises(BackendUnavailable, match="not JSON"):
        json_object(httpx.Response(502, content=b"<html>bad gateway</html>"), "server")


def test_request_bodies_are_the_json_of_the_request() -> None:
    """Non-ASCII text as UTF-8, numbers as written, integers past 64 bits kept whole."""
    body = {"model": "m", "text": "Siobhán “quoted”", "enum": [0.1, 0.25, 1e-07], "n": 2**70}
    assert json.loads(encode_json(body)) == body
    assert "Siobhán".encode() in encode_json({"t": "Siobhán"})
