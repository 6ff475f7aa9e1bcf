"""relay dev's HTTP front as a hostile client meets it: raw sockets against the in-process server.

Issue 9: a GET's body was parsed as a second request, a short body hung the connection, malformed
requests got HTML pages, and the /_admin routes needed no credential. Each case here must be
answered once, in Relay's JSON error shape, within the read timeout; the admin routes must need
the admin token, the right Host and JSON, and name every bad field.
"""

from __future__ import annotations

import json
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from functions.adapters.stores.senders import ACTIVE
from relay.client import RelayClient, save_credentials
from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.local.server import default_limits
from tests.e2e.conftest import RELAY_HOME, RelayDev

READ_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    limits = replace(default_limits(), read_timeout=READ_TIMEOUT, idle_timeout=1.0)
    local = LocalRelay(port=0, time_scale=0.01, server_limits=limits).start()
    for worker in local.workers:
        worker.stop()
    try:
        yield local
    finally:
        local.stop()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes


def host(relay: LocalRelay) -> bytes:
    assert relay.server is not None
    return f"Host: 127.0.0.1:{relay.server.server_address[1]}\r\n".encode()


def send_raw(relay: LocalRelay, data: bytes, timeout: float = 10) -> bytes:
    """Send `data`, read until the server closes (or the idle timeout closes it)."""
    assert relay.server is not None
    with socket.create_connection(("127.0.0.1", relay.server.server_address[1]), timeout=timeout) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def replies(raw: bytes) -> list[Reply]:
    """Every response in `raw` (each framed by Content-Length, as the server sends them)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), raw[:200]
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        body, raw = rest[:length], rest[length:]
        found.append(Reply(int(lines[0].split()[1]), headers, json.loads(body) if body else None, body))
    return found


def only_reply(raw: bytes) -> Reply:
    answers = replies(raw)
    assert len(answers) == 1, answers
    return answers[0]


def assert_error_shape(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, reply
    assert reply.headers["content-type"] == "application/json"
    error: dict[str, Any] = reply.body["error"]
    assert set(error) >= {"code", "message", "requestId"} and error["requestId"]
    assert "Traceback" not in reply.raw.decode("utf-8", "replace")
    return error


def dev_sender_enabled(relay: LocalRelay) -> bool:
    admin = RelayClient(relay.url, token=relay.admin_token)
    senders = {sender["senderId"]: sender for sender in admin.admin("GET", "/senders").body}
    return bool(senders[DEV_SENDER]["status"] == ACTIVE)


# -- framing: one request per message -------------------------------------------------------------


def smuggled(relay: LocalRelay) -> bytes:
    return (
        b"POST /_admin/senders/dev/disable HTTP/1.1\r\n" + host(relay) + b"Authorization: Bearer "
        b"" + relay.admin_token.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"
    )


def test_a_get_body_carrying_a_second_request_is_only_a_body(relay: LocalRelay) -> None:
    # Given a GET /health whose body is a whole admin request
    inner = smuggled(relay)
    request = b"GET /health HTTP/1.1\r\n" + host(relay) + b"Content-Length: %d\r\n\r\n" % len(inner) + inner
    # When it is sent
    reply = only_reply(send_raw(relay, request))
    # Then one answer (the health check) comes back, and the smuggled request never ran
    assert reply.status == 200 and reply.body == {"status": "ok"}
    assert dev_sender_enabled(relay)


def test_a_chunked_get_body_is_only_a_body(relay: LocalRelay) -> None:
    inner = smuggled(relay)
    request = (
        b"GET /health HTTP/1.1\r\n" + host(relay) + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"
    )
    reply = only_reply(send_raw(relay, request))
    assert reply.status == 200
    assert dev_sender_enabled(relay)


def test_two_different_content_lengths_are_refused(relay: LocalRelay) -> None:
    request = (
        b"POST /messages HTTP/1.1\r\n" + host(relay) + f"Authorization: Bearer {relay.dev_token}\r\n".encode() + b""
        b"Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"
    )
    reply = only_reply(send_raw(relay, request))
    assert assert_error_shape(reply, 400)["code"] == "BAD_REQUEST"
    assert reply.headers["connection"] == "close"


def test_transfer_encoding_with_content_length_is_refused(relay: LocalRelay) -> None:
    request = (
        b"POST /messages HTTP/1.1\r\n" + host(relay) + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
    )
    assert_error_shape(only_reply(send_raw(relay, request)), 400)


def test_a_body_shorter_than_announced_answers_408_after_the_read_timeout(relay: LocalRelay) -> None:
    # Given a POST announcing 100 bytes that sends 2 and waits
    request = b"POST /messages HTTP/1.1\r\n" + host(relay) + b"Content-Length: 100\r\n\r\n{}"
    started = time.monotonic()
    # When the read timeout passes
    reply = only_reply(send_raw(relay, request))
    # Then the answer is a JSON 408, no later than the timeout plus a second
    assert assert_error_shape(reply, 408)["code"] == "REQUEST_TIMEOUT"
    assert READ_TIMEOUT <= time.monotonic() - started < READ_TIMEOUT + 1


def test_a_trickled_request_answers_408_within_the_read_timeout(relay: LocalRelay) -> None:
    # Given a client that sends a request a few bytes at a time, never finishing it
    assert relay.server is not None
    request = b"POST /messages HTTP/1.1\r\n" + host(relay) + b"Content-Length: 50\r\n\r\n" + b"{" * 50
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", relay.server.server_address[1]), timeout=10) as connection:
        for offset in range(0, len(request), 4):
            if select.select([connection], [], [], 0.1)[0]:
                break  # the server has answered
            connection.sendall(request[offset : offset + 4])
        answered = time.monotonic() - started
        raw = b"".join(iter(lambda: connection.recv(65536), b""))
    # Then it gets a JSON 408 no later than the read timeout plus a second, whatever the trickle
    assert assert_error_shape(only_reply(raw), 408)["code"] == "REQUEST_TIMEOUT"
    assert answered < READ_TIMEOUT + 1


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(relay: LocalRelay) -> None:
    # Given a connection that asked once and then says nothing
    started = time.monotonic()
    raw = send_raw(relay, b"GET /health HTTP/1.1\r\n" + host(relay) + b"\r\n")
    # Then it got its one answer, and the server closed it after the idle timeout (1 s here)
    assert only_reply(raw).status == 200
    assert time.monotonic() - started < 3


# -- limits and malformed requests ------------------------------------------------------------------

PROTOCOL_CASES: dict[str, tuple[Any, int, str]] = {
    "5,000 headers": (
        lambda h: b"GET /health HTTP/1.1\r\n" + h + b"".join(b"X-H%d: v\r\n" % n for n in range(5000)) + b"\r\n",
        431,
        "HEADERS_TOO_LARGE",
    ),
    "a 70 KB header line": (
        lambda h: b"GET /health HTTP/1.1\r\n" + h + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        431,
        "HEADERS_TOO_LARGE",
    ),
    "a 70 KB URI": (lambda h: b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n" + h + b"\r\n", 414, "URI_TOO_LONG"),
    "a garbage request line": (lambda h: b"\x16\x03\x01 garbage\r\n\r\n", 400, "BAD_REQUEST"),
    "HTTP/9.9": (lambda h: b"GET /health HTTP/9.9\r\n" + h + b"\r\n", 505, "HTTP_VERSION_NOT_SUPPORTED"),
    "a body over the API's limit": (
        lambda h: b"POST /messages HTTP/1.1\r\n" + h + b"Content-Length: 99999999999\r\n\r\n{}",
        413,
        "PAYLOAD_TOO_LARGE",
    ),
}


@pytest.mark.parametrize("case", sorted(PROTOCOL_CASES))
def test_protocol_refusals_are_json_with_a_status_line(case: str, relay: LocalRelay) -> None:
    build, status, code = PROTOCOL_CASES[case]
    reply = only_reply(send_raw(relay, build(host(relay))))
    assert assert_error_shape(reply, status)["code"] == code
    assert reply.headers["connection"] == "close"


# -- the Host rule and browser-sendable requests ---------------------------------------------------


def admin_post(relay: LocalRelay, path: str, body: bytes, **headers: str) -> Reply:
    fields = {"Content-Type": "application/json", "Authorization": f"Bearer {relay.admin_token}", **headers}
    lines = b"".join(f"{name.replace('_', '-')}: {value}\r\n".encode() for name, value in fields.items() if value)
    request = (
        f"POST /_admin{path} HTTP/1.1\r\n".encode()
        + (b"" if "Host" in headers else host(relay))
        + lines
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )
    return only_reply(send_raw(relay, request))


def test_a_foreign_host_is_refused_on_every_route(relay: LocalRelay) -> None:
    for request in (
        b"GET /health HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
        b"GET /_admin/senders HTTP/1.1\r\nHost: attacker.example:8000\r\nConnection: close\r\n\r\n",
    ):
        assert assert_error_shape(only_reply(send_raw(relay, request)), 421)["code"] == "MISDIRECTED_REQUEST"
    # even with the admin token, a rebound name cannot act
    reply = admin_post(relay, "/senders/dev/disable", b"{}", Host="attacker.example")
    assert assert_error_shape(reply, 421)["code"] == "MISDIRECTED_REQUEST"
    assert dev_sender_enabled(relay)


def test_what_a_web_page_can_send_without_a_preflight_is_refused(relay: LocalRelay) -> None:
    # Given the request any page can send to 127.0.0.1: text/plain, an Origin, no Authorization
    page = {"Content-Type": "text/plain", "Origin": "http://attacker.example", "Authorization": ""}
    reply = admin_post(relay, "/senders/dev/disable", b"{}", **page)
    assert assert_error_shape(reply, 401)["code"] == "UNAUTHORIZED"
    # With the token but as text/plain or a form: still refused
    for media_type in ("text/plain", "application/x-www-form-urlencoded"):
        reply = admin_post(relay, "/senders/dev/disable", b"{}", **{"Content-Type": media_type})
        assert assert_error_shape(reply, 415)["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert dev_sender_enabled(relay)


# -- the admin credential and admin input -----------------------------------------------------------


def test_creating_a_sender_needs_the_admin_token(relay: LocalRelay) -> None:
    sender = f"s-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"senderId": sender}).encode()
    # Without it, or with another token (the dev sender's), 401 in Relay's shape
    assert assert_error_shape(admin_post(relay, "/senders", body, Authorization=""), 401)["code"] == "UNAUTHORIZED"
    wrong = admin_post(relay, "/senders", body, Authorization=f"Bearer {relay.dev_token}")
    assert assert_error_shape(wrong, 401)["code"] == "UNAUTHORIZED"
    # With it, the sender is created
    created = admin_post(relay, "/senders", body)
    assert created.status == 200 and created.body["senderId"] == sender and created.body["token"]


ADMIN_INPUT_CASES: dict[str, tuple[str, bytes, str]] = {
    "[] as a rotate body": ("/senders/dev/rotate-token", b"[]", "$"),
    "graceHours 1e300": ("/senders/dev/rotate-token", b'{"graceHours": 1e300}', "$.graceHours"),
    "graceHours NaN": ("/senders/dev/rotate-token", b'{"graceHours": NaN}', "$"),
    "an empty sender id": ("/senders", b'{"senderId": ""}', "$.senderId"),
    "a 3,000-character sender id": ("/senders", json.dumps({"senderId": "a" * 3000}).encode(), "$.senderId"),
    "a key-forging sender id": ("/senders", b'{"senderId": "a#STATUS#x"}', "$.senderId"),
    "ratePerSecond fast": ("/senders", b'{"senderId": "quick", "ratePerSecond": "fast"}', "$.ratePerSecond"),
    "a negative burst": ("/senders", b'{"senderId": "quick", "burst": -1}', "$.burst"),
    "a sender id in the path": ("/senders/a%23STATUS%23x/disable", b"{}", "$.senderId"),
    # The API's nesting limit (64 levels), named as every API route names it
    "a sender id nested 65 levels": ("/senders", b'{"senderId": ' + b"[" * 65 + b"]" * 65 + b"}", "$.senderId"),
}


@pytest.mark.parametrize("case", sorted(ADMIN_INPUT_CASES))
def test_bad_admin_input_is_a_400_naming_the_field(case: str, relay: LocalRelay) -> None:
    path, body, field = ADMIN_INPUT_CASES[case]
    error = assert_error_shape(admin_post(relay, path, body), 400)
    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["path"] for detail in error["details"]] == [field], error
    # Nothing was created
    listed = RelayClient(relay.url, token=relay.admin_token).admin("GET", "/senders").body
    assert "quick" not in {sender["senderId"] for sender in listed}


def test_relay_senders_uses_the_saved_admin_token(relay: LocalRelay, capsys: pytest.CaptureFixture[str]) -> None:
    from relay.cli import main

    # Given the credentials relay dev saves (the admin token among them)
    save_credentials(relay.url, {"senderId": DEV_SENDER, "token": relay.dev_token, "adminToken": relay.admin_token})
    sender = f"cli-{uuid.uuid4().hex[:6]}"
    # When `relay senders create` runs against the local relay, with and without limits of its own
    assert main(["senders", "create", sender, "--url", relay.url, "--rate", "5", "--burst", "5"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert main(["senders", "create", f"{sender}-plain", "--url", relay.url]) == 0
    plain = json.loads(capsys.readouterr().out)
    # Then the senders exist, and each is let in by API Gateway's key check (never a 403)
    assert created["senderId"] == sender
    for token in (created["token"], plain["token"]):
        assert RelayClient(relay.url, token=token).list().status == 200
    # And a wrong admin token is refused
    assert main(["senders", "list", "--url", relay.url, "--admin-token", "rlyadm_wrong"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "UNAUTHORIZED"


def test_a_route_that_fails_still_answers_json_500(relay: LocalRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a route whose code raises (here: API Gateway's front door)
    assert relay.server is not None

    def broken(request: Any) -> Any:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(relay.server.gateway, "admit", broken)
    request = b"GET /messages/x HTTP/1.1\r\n" + host(relay) + b"Authorization: Bearer t\r\nConnection: close\r\n\r\n"
    # Then the caller gets Relay's 500, without the detail
    reply = only_reply(send_raw(relay, request))
    assert assert_error_shape(reply, 500)["code"] == "SYSTEM_ERROR"
    assert b"internal detail" not in reply.raw


def test_relay_dev_prints_and_saves_its_admin_token(relay_dev_process: RelayDev) -> None:
    # Given `relay dev` as a user starts it
    printed = relay_dev_process._printed(r"Admin token.*?(rlyadm_[A-Za-z0-9_-]+)", "admin token")
    # Then the admin token it printed is saved with the CLI credentials for its URL
    saved = json.loads((RELAY_HOME / "credentials.json").read_text(encoding="utf-8"))[relay_dev_process.url]
    assert saved["adminToken"] == printed and saved["token"] == relay_dev_process.dev_token
    # And it opens the admin routes, which stay shut without it
    assert RelayClient(relay_dev_process.url, token=printed).admin("GET", "/senders").status == 200
    refused = RelayClient(relay_dev_process.url, token=relay_dev_process.dev_token).admin("GET", "/senders")
    assert (refused.status, refused.body["error"]["code"]) == (401, "UNAUTHORIZED")
