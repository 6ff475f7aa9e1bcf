"""Hostile requests to `relay dev` over real HTTP: always a 4xx naming the field, nothing stored.

Each request carries a fresh messageId; after the refusal, the status API must answer 404 for it
(the message was not stored), and the server must keep answering.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from functions.domain.config import get_settings
from functions.domain.validation import ENVELOPE_ALLOWANCE_BYTES
from relay.local.runtime import DEV_SENDER, LocalRelay
from tests.fuzz.conftest import http


def message(message_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "senderId": DEV_SENDER,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "targetUrl": "https://example.com/hook",
        **fields,
    }


def compact(document: Any) -> bytes:
    try:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate: only its \\u escape can be sent
        return json.dumps(document, separators=(",", ":")).encode()


def deep_json(message_id: str, depth: int) -> bytes:
    return compact(message(message_id))[:-1] + b',"body":' + b"[" * depth + b"]" * depth + b"}"


def invalid_utf8(message_id: str) -> bytes:
    return compact(message(message_id, body="PLACEHOLDER")).replace(b"PLACEHOLDER", b"caf\xe9 \xff\xfe")


LIMIT = get_settings().max_body_bytes
# name -> (request body for a message id, expected status, expected JSON path prefix)
CASES: dict[str, tuple[Callable[[str], bytes], int, str]] = {
    "request over the size limit": (
        lambda i: compact(message(i, body="x" * (LIMIT + ENVELOPE_ALLOWANCE_BYTES))),
        413,
        "$",
    ),
    "body over the body limit": (lambda i: compact(message(i, body="x" * (LIMIT + 1))), 413, "$.body"),
    "body over the limit in UTF-8 bytes": (lambda i: compact(message(i, body="€" * (LIMIT // 3 + 1))), 413, "$.body"),
    "deep JSON (20,000 levels)": (lambda i: deep_json(i, 20_000), 400, "$.body"),
    "JSON nested 65 levels": (lambda i: deep_json(i, 65), 400, "$.body"),
    "deep JSON (2,000 levels)": (lambda i: deep_json(i, 2_000), 400, "$.body"),
    "invalid UTF-8": (invalid_utf8, 400, "$"),
    "lone surrogate escape": (lambda i: compact(message(i, body="\ud800")), 400, "$.body"),
    "NaN": (lambda i: compact(message(i))[:-1] + b',"body":{"x":NaN}}', 400, "$"),
    "integer over the digit limit": (
        lambda i: compact(message(i))[:-1] + b',"body":[1' + b"0" * 5000 + b"]}",
        400,
        "$",
    ),
    "CR/LF in a header value": (
        lambda i: compact(message(i, headers={"X-A": "v\r\nX-Injected: 1"})),
        400,
        "$.headers['X-A']",
    ),
    "LF in a header name": (lambda i: compact(message(i, headers={"X-A\nX-B": "v"})), 400, "$.headers"),
    "NUL in a header value": (lambda i: compact(message(i, headers={"X-A": "a\x00b"})), 400, "$.headers['X-A']"),
    "reserved header": (lambda i: compact(message(i, headers={"Transfer-Encoding": "chunked"})), 400, "$.headers"),
    "10,000 headers": (lambda i: compact(message(i, headers={f"H{n}": "" for n in range(10_000)})), 400, "$.headers"),
    # relay dev allows private targets, but never integer, hex, octal or short IPv4 spellings
    "hex IPv4 target": (lambda i: compact(message(i, targetUrl="http://0x7f000001/")), 400, "$.targetUrl"),
    "credentials in the target": (
        lambda i: compact(message(i, targetUrl="https://u:p@example.com/")),
        400,
        "$.targetUrl",
    ),
    "unknown field": (lambda i: compact(message(i, priority="high")), 400, "$.priority"),
    "another sender": (lambda i: compact(message(i, senderId="mallory")), 403, "$.senderId"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_request_is_a_4xx_naming_the_field_and_stores_nothing(case: str, local_relay: LocalRelay) -> None:
    build, expected_status, expected_path = CASES[case]
    message_id = f"hostile-{uuid.uuid4().hex[:10]}"
    raw = build(message_id)
    status, body = http("POST", f"{local_relay.url}/messages", raw, token=local_relay.dev_token)
    assert status == expected_status, (status, body)
    assert isinstance(body, dict), body
    error = body["error"]
    assert set(error) >= {"code", "message", "requestId"}
    if "details" in error:
        assert any(detail["path"].startswith(expected_path) for detail in error["details"]), error
        assert all(detail["path"].startswith("$") for detail in error["details"]), error
    else:
        assert expected_path == "$", error  # only the request-level 413 names no field
    # Nothing was stored
    status, body = http("GET", f"{local_relay.url}/messages/{message_id}", token=local_relay.dev_token)
    assert (status, body["error"]["code"]) == (404, "MESSAGE_NOT_FOUND")


def _raw_request(url: str, request: bytes) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_content_length_that_is_not_a_number_or_lies(local_relay: LocalRelay) -> None:
    host = urlsplit(local_relay.url).netloc
    auth = f"Authorization: Bearer {local_relay.dev_token}\r\n".encode()
    not_a_number = _raw_request(
        local_relay.url,
        b"POST /messages HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + auth + b"Content-Length: ten\r\n"
        b"Connection: close\r\n\r\n{}",
    )
    assert not_a_number.startswith(b"HTTP/1.1 400"), not_a_number[:200]
    huge = _raw_request(
        local_relay.url,
        b"POST /messages HTTP/1.1\r\nHost: " + host.encode() + b"\r\n" + auth + b"Content-Length: 99999999999\r\n"
        b"Connection: close\r\n\r\n{}",
    )
    assert huge.startswith(b"HTTP/1.1 413"), huge[:200]
    # And the server still answers
    assert http("GET", f"{local_relay.url}/health")[0] == 200


def test_unknown_methods_and_routes_answer_json_404(local_relay: LocalRelay) -> None:
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"):
        status, body = http(method, f"{local_relay.url}/messages", b"{}", token=local_relay.dev_token)
        assert (status, body["error"]["code"]) == (404, "NOT_FOUND"), (method, body)
    status, body = http("GET", f"{local_relay.url}/nothing-here")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")
