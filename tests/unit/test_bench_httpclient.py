"""The benchmark's minimal HTTP/1.1 client: response framing (no server needed)."""
from __future__ import annotations

import asyncio

import pytest

from bench import httpclient


def feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_content_length_body():
    reader = feed(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": true}"
                  b"HTTP/1.1 204 No Content\r\n\r\n")
    assert await httpclient.read_response(reader) == (200, b'{"a": true}')
    assert await httpclient.read_response(reader) == (204, b"")


async def test_chunked_body():
    reader = feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;x=y\r\npedia \r\n0\r\n\r\n")
    assert await httpclient.read_response(reader) == (200, b"Wikipedia ")


def test_parse_head_rejects_non_http():
    with pytest.raises(ConnectionError):
        httpclient.parse_head(b"SSH-2.0-OpenSSH")
    assert httpclient.parse_head(b"HTTP/1.1 404 Not Found\r\nX-A: b") == (404, {"x-a": "b"})


def test_request_bytes_carry_headers_and_length():
    conn = httpclient.KeepAliveConnection("127.0.0.1", 8200, {"X-Vault-Token": "t"})
    raw = conn._request_bytes("POST", "/v1/secret/data/x", b"{}")
    assert raw.startswith(b"POST /v1/secret/data/x HTTP/1.1\r\n")
    assert b"X-Vault-Token: t\r\n" in raw and b"Content-Length: 2\r\n" in raw and raw.endswith(b"\r\n\r\n{}")
