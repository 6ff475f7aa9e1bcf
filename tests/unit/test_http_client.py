"""The SSRF-safe delivery client against real sockets on 127.0.0.1 (and ::1 where available)."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any

import pytest
import urllib3.util.connection

from functions.adapters import http_client
from functions.adapters.http_client import (
    DeliveryClient,
    InvalidResponse,
    TargetBlocked,
    TargetTimeout,
    TargetUnreachable,
    parse_retry_after,
)

# --- a tiny HTTP/1.1 target ------------------------------------------------------------------------


@dataclass
class Request:
    head: bytes  # request line and header lines exactly as received
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


Respond = Callable[[Request, socket.socket], bool]  # writes the answer; False closes the connection


def reply(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer(status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"ok") -> Respond:
    def respond(request: Request, conn: socket.socket) -> bool:
        conn.sendall(reply(status, headers, body))  # one write: no Nagle/delayed-ACK stalls
        return True

    return respond


def read_request(reader: Any) -> Request | None:
    head = b""
    while True:
        line = reader.readline(65537)
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines if line]
    request = Request(head, method, target, headers, b"")  # type: ignore[arg-type]
    length = int(request.header("content-length") or 0)
    request.body = reader.read(length) if length else b""
    return request


@dataclass
class Target:
    respond: Respond
    family: int = socket.AF_INET
    tls: ssl.SSLContext | None = None
    accepts: int = 0
    requests: list[Request] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.listener = socket.socket(self.family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("::1" if self.family == socket.AF_INET6 else "127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepts += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), conn:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            while not self.stop.is_set():
                request = read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                if not self.respond(request, conn):
                    return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Target]]:
    targets: list[Target] = []

    def start(respond: Respond | None = None, **kwargs: Any) -> Target:
        target = Target(respond or answer(), **kwargs)
        targets.append(target)
        return target

    yield start
    for target in targets:
        target.close()


@pytest.fixture(autouse=True)
def _fresh_pools() -> Iterator[None]:
    http_client.close_pools()
    yield
    http_client.close_pools()


def client(**overrides: Any) -> DeliveryClient:
    options: dict[str, Any] = {
        "allow_private": True,
        "connect_timeout": 0.5,
        "total_timeout": 1.0,
        "max_response_bytes": 1024,
    }
    options.update(overrides)
    return DeliveryClient(**options)


def resolver_for(*addresses: str, calls: list[str] | None = None) -> Callable[..., list[tuple[Any, ...]]]:
    """A getaddrinfo stand-in that answers every name with the given addresses."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append(host)
        infos: list[tuple[Any, ...]] = []
        for address in addresses:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return infos

    return resolve


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


# --- byte-exact requests ---------------------------------------------------------------------------


def test_method_headers_and_body_arrive_byte_exact(serve: Callable[..., Target]) -> None:
    # Given a target and a body with non-ASCII UTF-8 bytes
    target = serve()
    body = '{"name":"Zoë","note":"✓ 日本","raw":"\\u00e9"}'.encode()
    headers = {"X-Custom-Header": "Value With  Spaces", "content-type": "application/json", "webhook-id": "m1"}

    # When it is sent with PUT
    response = client().send(f"http://127.0.0.1:{target.port}/hooks/in?a=1&b=%2F", "PUT", headers, body)

    # Then the target sees the same method, path, header names (case kept), values and body bytes
    assert response.status_code == 200
    (request,) = target.requests
    assert request.head.startswith(b"PUT /hooks/in?a=1&b=%2F HTTP/1.1\r\n")
    assert b"\r\nX-Custom-Header: Value With  Spaces\r\n" in request.head
    assert b"\r\ncontent-type: application/json\r\n" in request.head
    assert b"\r\nwebhook-id: m1\r\n" in request.head
    assert request.header("Content-Length") == str(len(body))
    assert request.header("Host") == f"127.0.0.1:{target.port}"
    assert request.header("User-Agent") == http_client.DEFAULT_USER_AGENT
    assert request.body == body


def test_non_latin1_header_value_is_sent_as_utf8(serve: Callable[..., Target]) -> None:
    # Given a header value outside Latin-1
    target = serve()

    # When it is sent
    client().send(f"http://127.0.0.1:{target.port}/", "POST", {"X-Price": "10 €"}, b"x")

    # Then its UTF-8 bytes are on the wire (not an encoding error)
    assert b"\r\nX-Price: 10 \xe2\x82\xac\r\n" in target.requests[0].head


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_and_head_without_body_send_no_body_or_length(serve: Callable[..., Target], method: str) -> None:
    # Given a target
    target = serve()

    # When GET/HEAD is sent with no body
    response = client().send(f"http://127.0.0.1:{target.port}/status", method, {}, None)

    # Then no Content-Length or Transfer-Encoding is sent
    assert response.status_code == 200
    (request,) = target.requests
    assert request.method == method
    assert request.header("Content-Length") is None
    assert request.header("Transfer-Encoding") is None


def test_headers_the_client_owns_are_refused(serve: Callable[..., Target]) -> None:
    # Given a caller header that would break framing or pinning
    target = serve()

    # When sent, Then it is refused before any connection
    for name in ("Host", "content-length", "Transfer-Encoding", "Connection"):
        with pytest.raises(ValueError, match="set by the delivery client"):
            client().send(f"http://127.0.0.1:{target.port}/", "POST", {name: "x"}, b"")
    assert target.accepts == 0


# --- redirects, response body, Retry-After ---------------------------------------------------------


def test_redirect_is_returned_not_followed(serve: Callable[..., Target]) -> None:
    # Given a target that redirects to a second server
    elsewhere = serve()
    target = serve(answer(302, {"Location": f"http://127.0.0.1:{elsewhere.port}/stolen"}, b""))

    # When a message is delivered
    response = client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"{}")

    # Then the 3xx is the response and the Location target is never contacted
    assert response.status_code == 302
    assert response.headers["location"] == f"http://127.0.0.1:{elsewhere.port}/stolen"
    assert elsewhere.accepts == 0


def test_response_body_is_read_only_up_to_the_cap(serve: Callable[..., Target]) -> None:
    # Given a target that answers with 5 MB
    five_mb = 5 * 1024 * 1024

    def huge(request: Request, conn: socket.socket) -> bool:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {five_mb}\r\n\r\n".encode())
        chunk = "é".encode() * 32 * 1024
        with contextlib.suppress(OSError):
            for _ in range(five_mb // len(chunk)):
                conn.sendall(chunk)
        return True

    target = serve(huge)

    # When delivered with a 1000-byte cap
    started = time.monotonic()
    response = client(max_response_bytes=1000).send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"")

    # Then the snippet holds at most the cap (decoded with replacement) and the call returns quickly
    assert response.status_code == 200
    assert len(response.body_snippet.encode()) <= 1000 + 3
    assert response.body_snippet.startswith("éé")
    assert time.monotonic() - started < 0.9

    # And the half-read connection is not reused (the next send opens a new one)
    target.respond = answer()
    assert client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"").status_code == 200
    assert target.accepts == 2


def test_small_body_is_returned_whole(serve: Callable[..., Target]) -> None:
    # Given a target with a short error body
    target = serve(answer(422, {"Content-Type": "text/plain"}, b"bad \xff input"))

    # When delivered, Then the snippet is the body decoded with replacement characters
    response = client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"")
    assert response.status_code == 422
    assert response.body_snippet == "bad \ufffd input"
    assert response.headers["content-type"] == "text/plain"
    assert response.duration_ms >= 0


def test_retry_after_in_seconds(serve: Callable[..., Target]) -> None:
    # Given a 503 with Retry-After in seconds
    target = serve(answer(503, {"Retry-After": "120"}))

    # When delivered, Then the wait is read
    response = client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"")
    assert (response.status_code, response.retry_after_seconds) == (503, 120)


def test_retry_after_as_http_date(serve: Callable[..., Target]) -> None:
    # Given a 429 with Retry-After as an HTTP-date 90 s ahead
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=90)
    target = serve(answer(429, {"Retry-After": format_datetime(when, usegmt=True)}))

    # When delivered, Then the wait is the seconds until that date
    response = client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"")
    assert response.status_code == 429
    assert response.retry_after_seconds is not None
    assert 88 <= response.retry_after_seconds <= 91


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0),
        (" 7 ", 7),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("\u00b2", None),  # a Unicode digit
        ("9" * 5000, None),  # longer than int() accepts
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0),  # in the past
        ("Wed, 21 Oct 2015 07:28:00", None),  # no zone: not an HTTP-date
    ],
)
def test_parse_retry_after(value: str | None, expected: int | None) -> None:
    assert parse_retry_after(value) == expected


# --- timeouts and unreachable targets --------------------------------------------------------------


def test_target_that_accepts_but_never_answers_times_out(serve: Callable[..., Target]) -> None:
    # Given a target that reads the request and then says nothing
    def silent(request: Request, conn: socket.socket) -> bool:
        target.stop.wait(5)
        return False

    target = serve(silent)

    # When delivered with a 0.4 s total timeout
    started = time.monotonic()
    with pytest.raises(TargetTimeout, match=r"0\.4s total timeout"):
        client(total_timeout=0.4).send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"")

    # Then it gives up after about the timeout
    assert 0.35 <= time.monotonic() - started < 1.0


def test_target_that_trickles_bytes_hits_the_total_deadline(serve: Callable[..., Target]) -> None:
    # Given a target that sends its status line one byte every 50 ms, forever (each read is "in time")
    def trickle(request: Request, conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 ")
        while not target.stop.wait(0.05):
            conn.sendall(b"a")
        return False

    target = serve(trickle)

    # When delivered with a 0.5 s total timeout
    started = time.monotonic()
    with pytest.raises(TargetTimeout):
        client(total_timeout=0.5).send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"")

    # Then the whole call ends at about the deadline
    assert 0.45 <= time.monotonic() - started < 1.0


def test_connect_timeout() -> None:
    # Given a listener whose accept queue is full, so new SYNs go unanswered
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    probe = socket.socket()
    probe.settimeout(0.2)
    try:
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel completes connections past a full backlog")
        except TimeoutError:
            pass

        # When delivered with a 0.3 s connect timeout
        started = time.monotonic()
        with pytest.raises(TargetTimeout, match=r"connecting timed out after 0\.3s"):
            client(connect_timeout=0.3, total_timeout=2.0).send(f"http://127.0.0.1:{port}/", "POST", {}, b"")

        # Then it gives up after about the connect timeout, not the total one
        assert 0.25 <= time.monotonic() - started < 1.0
    finally:
        for sock in (probe, filler, listener):
            sock.close()


def test_connection_refused_is_unreachable() -> None:
    # Given a port nobody listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    # When delivered, Then the target is unreachable and the message says why
    with pytest.raises(TargetUnreachable, match="refused"):
        client().send(f"http://127.0.0.1:{port}/", "POST", {}, b"")


def test_connection_reset_is_unreachable(serve: Callable[..., Target]) -> None:
    # Given a target that resets the connection after reading the request
    def reset(request: Request, conn: socket.socket) -> bool:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    target = serve(reset)

    # When delivered, Then the target is unreachable (and nothing was retried on a fresh connection)
    with pytest.raises(TargetUnreachable, match=r"reset|closed the connection"):
        client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"")
    assert target.accepts == 1


def test_dns_failure_is_unreachable() -> None:
    # Given a resolver that cannot resolve the name
    def failing(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # When delivered, Then the target is unreachable, naming the host
    with pytest.raises(TargetUnreachable, match=r"could not resolve hooks\.example\.com"):
        client(resolver=failing).send("https://hooks.example.com/in", "POST", {}, b"")


# --- hostile targets: one deadline, and the status line decides ------------------------------------

LIMIT_SLACK = 1.0  # the attempt may end at most this long after its total timeout


def raw(*chunks: bytes, then_trickle: bytes = b"", every: float = 0.05) -> Respond:
    """A target that writes `chunks` as given, then (optionally) `then_trickle` one byte at a time
    until the client goes away (its next write fails) or 30 s pass."""

    def respond(request: Request, conn: socket.socket) -> bool:
        for chunk in chunks:
            conn.sendall(chunk)
        give_up = time.monotonic() + 30
        while then_trickle and time.monotonic() < give_up:
            time.sleep(every)
            conn.sendall(then_trickle)
        return False  # close the connection

    return respond


def many_headers(status: int, count: int) -> bytes:
    lines = b"".join(b"X-Header-%d: v\r\n" % number for number in range(count))
    return b"HTTP/1.1 %d X\r\n" % status + lines + b"Content-Length: 2\r\n\r\nok"


def test_trickled_body_after_connection_close_ends_within_the_total_timeout(serve: Callable[..., Target]) -> None:
    # Given a target that answers 200 with `Connection: close`, then trickles the body a byte per 50 ms
    target = serve(raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", then_trickle=b"a"))

    # When delivered with a 2 s total timeout
    started = time.monotonic()
    response = client(total_timeout=2.0).send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"x")
    elapsed = time.monotonic() - started

    # Then the attempt ends at the deadline, not when the target stops, and its duration says so
    assert 1.9 <= elapsed < 2.0 + LIMIT_SLACK
    assert response.duration_ms <= (2.0 + LIMIT_SLACK) * 1000
    # And the 2xx status line counts: delivered, with what went wrong recorded, sent once
    assert response.status_code == 200
    assert response.anomaly == "the rest of the response did not arrive within the 2s total timeout"
    assert len(target.requests) == 1


def test_trickled_error_body_after_connection_close_times_out_at_the_deadline(
    serve: Callable[..., Target],
) -> None:
    # Given a target that answers 503 with `Connection: close`, then trickles the body
    target = serve(raw(b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\n", then_trickle=b"a"))

    # When delivered with a 1 s total timeout
    started = time.monotonic()
    with pytest.raises(TargetTimeout, match=r"1s total timeout"):
        client(total_timeout=1.0).send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"x")

    # Then the attempt fails (retryable) within the total timeout + 1 s
    assert time.monotonic() - started < 1.0 + LIMIT_SLACK


def test_trickled_headers_after_a_2xx_status_line_count_as_delivered(serve: Callable[..., Target]) -> None:
    # Given a target that sends `200 OK`, then one header byte every 50 ms, forever
    target = serve(raw(b"HTTP/1.1 200 OK\r\nX-Slow: ", then_trickle=b"a"))

    # When delivered with a 0.5 s total timeout
    started = time.monotonic()
    response = client(total_timeout=0.5).send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"x")

    # Then it ends at the deadline as delivered, with the timeout recorded
    assert time.monotonic() - started < 0.5 + LIMIT_SLACK
    assert (response.status_code, len(target.requests)) == (200, 1)
    assert response.anomaly is not None and "0.5s total timeout" in response.anomaly


def test_slow_dns_is_bounded_by_the_total_timeout() -> None:
    # Given a resolver that takes 5 s to answer (the target's DNS servers stalling)
    def stalling(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        time.sleep(5)
        return resolver_for("127.0.0.1")(host, port)

    # When delivered with a 0.5 s total timeout
    started = time.monotonic()
    with pytest.raises(TargetTimeout, match=r"could not resolve relay-test\.example within the 0\.5s"):
        client(resolver=stalling, total_timeout=0.5).send("http://relay-test.example/", "POST", {}, b"")

    # Then it gives up at the deadline
    assert time.monotonic() - started < 0.5 + LIMIT_SLACK


def test_trickled_tls_handshake_is_bounded_by_the_connect_timeout() -> None:
    # Given a "TLS" target that answers the ClientHello with a 16 KB record, one byte every 50 ms
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def handshake_trickle() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), conn:
            conn.recv(65536)
            conn.sendall(b"\x16\x03\x03\x40\x00")
            while not stop.wait(0.05):
                conn.sendall(b"\x00")

    threading.Thread(target=handshake_trickle, daemon=True).start()
    try:
        # When delivered over https with a 0.5 s connect timeout
        started = time.monotonic()
        with pytest.raises(TargetTimeout, match=r"connecting timed out after 0\.5s"):
            client(connect_timeout=0.5, total_timeout=5.0).send(
                f"https://127.0.0.1:{listener.getsockname()[1]}/", "POST", {}, b""
            )
        # Then the handshake gives up after the connect timeout
        assert time.monotonic() - started < 0.5 + LIMIT_SLACK
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize(
    ("answer_bytes", "anomaly"),
    [
        (many_headers(200, 150), "too many response headers: more than 100"),
        (
            b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok",
            "response header too large: a header line over 65536 bytes",
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 100\r\n\r\n0123456789",
            None,  # a 204 has no body by definition: the extra bytes are not read
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
            "the response body is incomplete or badly framed (IncompleteRead(10 bytes read, 90 more expected))",
        ),
        (
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n",
            "the response body is incomplete or badly framed (IncompleteRead(0 bytes read))",
        ),
    ],
    ids=["150-headers", "70KB-header-line", "204-with-body", "body-cut-short", "broken-chunk"],
)
def test_a_2xx_status_line_is_delivered_whatever_follows(
    serve: Callable[..., Target], answer_bytes: bytes, anomaly: str | None
) -> None:
    # Given a target that answers 2xx and then breaks the rest of its response
    target = serve(raw(answer_bytes))

    # When delivered
    response = client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"x")

    # Then it is delivered (no error to retry on), with what was wrong, and the target saw one request
    assert 200 <= response.status_code <= 299
    assert response.anomaly == anomaly
    assert (target.accepts, len(target.requests)) == (1, 1)


@pytest.mark.parametrize(
    ("answer_bytes", "reason"),
    [
        (b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", "invalid status line 'HTTP/1.1 2OO OK'"),
        (b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n", "invalid status line 'HTTP/1.1 OK'"),
        (b"HTTP/1.1 99 Low\r\n\r\n", "invalid status line 'HTTP/1.1 99 Low'"),
        (b"HTTP/2 200\r\nContent-Length: 0\r\n\r\n", "invalid status line: unsupported HTTP version 'HTTP/2'"),
        (b"HTTP/1.1 200 " + b"O" * 70_000 + b"\r\n\r\n", "invalid status line: longer than 65536 bytes"),
        (b"HTTP/1.1 20", "invalid status line: the connection ended in the middle of it ('HTTP/1.1 20')"),
        (
            b"<html><body>hello</body></html>",
            "HTTP/0.9 response: the answer has no status line (it begins '<html><body>hello</body></html>')",
        ),
        (
            b"GARBAGE \x00\xff NOT HTTP\r\n\r\n",
            "HTTP/0.9 response: the answer has no status line (it begins 'GARBAGE \\x00ÿ NOT HTTP')",
        ),
        (many_headers(404, 150), "HTTP 404: too many response headers: more than 100"),
        (many_headers(503, 150), "HTTP 503: too many response headers: more than 100"),
    ],
    ids=[
        "letters-in-code",
        "no-code",
        "code-below-100",
        "http2-version",
        "70KB-status-line",
        "cut-in-status-line",
        "http09-body",
        "binary-garbage",
        "404-with-150-headers",
        "503-with-150-headers",
    ],
)
def test_an_invalid_response_gets_its_precise_reason_and_stays_retryable(
    serve: Callable[..., Target], answer_bytes: bytes, reason: str
) -> None:
    # Given a target whose answer is not a valid HTTP/1.x response (or breaks before a 2xx status)
    target = serve(raw(answer_bytes))

    # When delivered
    with pytest.raises(InvalidResponse) as raised:
        client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"x")

    # Then the error names what was wrong, not "the connection failed", and it is retryable
    assert str(raised.value) == f"127.0.0.1: {reason}"
    assert isinstance(raised.value, TargetUnreachable)
    assert len(target.requests) == 1


def test_interim_responses_are_skipped_and_the_final_status_decides(serve: Callable[..., Target]) -> None:
    # Given a target that answers 102 Processing and 103 Early Hints before its 200
    interim = b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n"
    target = serve(raw(interim + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))

    # When delivered
    response = client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"x")

    # Then the final answer is the response, a clean one
    assert (response.status_code, response.body_snippet, response.anomaly) == (200, "ok", None)


@pytest.mark.parametrize("status", [600, 999])
def test_a_status_code_over_599_is_an_answer_marked_invalid(serve: Callable[..., Target], status: int) -> None:
    # Given a target that answers with a 3-digit status code past 599 (RFC 9110: invalid)
    target = serve(raw(b"HTTP/1.1 %d Weird\r\nContent-Length: 5\r\n\r\noops!" % status))

    # When delivered
    response = client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"x")

    # Then the answer is kept as given (its code and body), saying the code is invalid and counts as a 5xx
    assert (response.status_code, response.body_snippet) == (status, "oops!")
    assert response.anomaly == f"invalid status code {status}: outside 100-599, treated as a server error (5xx)"
    assert len(target.requests) == 1


@pytest.mark.parametrize("status", [101, 404, 503, 599])
def test_a_status_code_from_100_to_599_is_not_marked_invalid(serve: Callable[..., Target], status: int) -> None:
    # Given a target that answers with a valid final status code
    target = serve(raw(b"HTTP/1.1 %d Fine\r\nContent-Length: 0\r\n\r\n" % status))
    # When delivered
    response = client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"x")
    # Then nothing is said to be wrong with it
    assert (response.status_code, response.anomaly) == (status, None)


def test_a_2xx_with_too_many_headers_on_a_kept_alive_connection_is_not_sent_again(
    serve: Callable[..., Target],
) -> None:
    # Given a keep-alive target that answers its second request with 200 and 150 headers
    answers = [reply(200, body=b"ok"), many_headers(200, 150)]

    def respond(request: Request, conn: socket.socket) -> bool:
        conn.sendall(answers[len(target.requests) - 1])
        return True

    target = serve(respond)
    url = f"http://127.0.0.1:{target.port}/"
    client().send(url, "POST", {}, b"one")

    # When the second message goes out on the kept-alive connection
    response = client().send(url, "POST", {}, b"two")

    # Then it is delivered once: no resend on a fresh connection
    assert (response.status_code, response.anomaly) == (200, "too many response headers: more than 100")
    assert [request.body for request in target.requests] == [b"one", b"two"]


# --- SSRF: blocked addresses, pinning --------------------------------------------------------------


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every TCP connection urllib3 opens is recorded here."""
    opened: list[tuple[Any, ...]] = []
    original = urllib3.util.connection.create_connection

    def spy(address: tuple[Any, ...], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        return original(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", spy)
    return opened


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "64:ff9b::7f00:1",
    ],
)
def test_resolved_private_address_is_blocked_before_connecting(
    serve: Callable[..., Target], connections: list[tuple[Any, ...]], address: str
) -> None:
    # Given a public-looking host name that resolves to a private address
    target = serve()
    strict = client(allow_private=False, resolver=resolver_for(address))

    # When delivered, Then it is refused naming the host, the address and the reason
    with pytest.raises(TargetBlocked) as raised:
        strict.send(f"http://hooks.example.com:{target.port}/", "POST", {}, b"{}")
    message = str(raised.value)
    assert "hooks.example.com" in message
    assert str(ipaddress.ip_address(address)) in message

    # And no connection was even attempted
    assert connections == []
    assert target.accepts == 0


def test_one_private_address_among_public_ones_blocks_the_target(
    serve: Callable[..., Target], connections: list[tuple[Any, ...]]
) -> None:
    # Given a host that resolves to a public and a private address
    target = serve()
    strict = client(allow_private=False, resolver=resolver_for("93.184.215.14", "127.0.0.1"))

    # When delivered, Then it is refused and nothing is contacted
    with pytest.raises(TargetBlocked, match=r"127\.0\.0\.1.*loopback"):
        strict.send(f"http://hooks.example.com:{target.port}/", "POST", {}, b"")
    assert connections == []
    assert target.accepts == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://[::1]:{port}/",
        "http://2130706433:{port}/",
        "http://localhost:{port}/",
        "ftp://example.com/",
        "http://user:pw@example.com/",
    ],
)
def test_url_rules_are_enforced(serve: Callable[..., Target], connections: list[tuple[Any, ...]], url: str) -> None:
    # Given a URL that breaks a rule (literal private address, odd spelling, scheme, credentials)
    target = serve()
    calls: list[str] = []
    strict = client(allow_private=False, resolver=resolver_for("93.184.215.14", calls=calls))

    # When delivered, Then it is blocked without DNS or a connection, and the password is not echoed
    with pytest.raises(TargetBlocked, match="the target URL") as raised:
        strict.send(url.format(port=target.port), "POST", {}, b"")
    assert "pw" not in str(raised.value)
    assert calls == []
    assert connections == []
    assert target.accepts == 0


def test_connection_is_pinned_to_the_checked_address(serve: Callable[..., Target]) -> None:
    # Given a name that the (fake) DNS maps to 127.0.0.1, private targets allowed
    target = serve()
    calls: list[str] = []
    local = client(allow_private=True, resolver=resolver_for("127.0.0.1", calls=calls))

    # When delivered
    response = local.send(f"http://relay-test.example:{target.port}/in", "POST", {}, b"{}")

    # Then the request reached the local server, with the real host name in Host, after one lookup
    assert response.status_code == 200
    assert target.requests[0].header("Host") == f"relay-test.example:{target.port}"
    assert calls == ["relay-test.example"]


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_address_is_pinned(serve: Callable[..., Target]) -> None:
    # Given a name that resolves to ::1 and a target listening there
    target = serve(family=socket.AF_INET6)
    local = client(resolver=resolver_for("::1"))

    # When delivered, Then it arrives with the host name in Host
    assert local.send(f"http://relay-test.example:{target.port}/", "POST", {}, b"").status_code == 200
    assert target.requests[0].header("Host") == f"relay-test.example:{target.port}"


def test_next_checked_address_is_tried_when_the_first_refuses(serve: Callable[..., Target]) -> None:
    # Given a name with two addresses, the first of which refuses connections
    target = serve()
    local = client(resolver=resolver_for("127.0.0.2", "127.0.0.1"))
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.2", target.port)) == 0:
            pytest.skip("127.0.0.2 reaches the 127.0.0.1 listener here")

    # When delivered, Then the second address answers
    assert local.send(f"http://relay-test.example:{target.port}/", "POST", {}, b"").status_code == 200


# --- keep-alive ------------------------------------------------------------------------------------


def test_two_sends_reuse_one_connection(serve: Callable[..., Target]) -> None:
    # Given a keep-alive target
    target = serve()
    url = f"http://relay-test.example:{target.port}/"

    # When two messages are delivered, even by two client instances (warm Lambda invocations)
    client(resolver=resolver_for("127.0.0.1")).send(url, "POST", {}, b"one")
    client(resolver=resolver_for("127.0.0.1")).send(url, "POST", {}, b"two")

    # Then one TCP connection carried both
    assert [request.body for request in target.requests] == [b"one", b"two"]
    assert target.accepts == 1


def test_dead_kept_alive_connection_is_replaced_once(serve: Callable[..., Target]) -> None:
    # Given a target that answers the first request, then drops the kept-alive connection when the
    # second request arrives on it (as after a Lambda freeze), and answers on a new connection
    seen = {"count": 0}

    def flaky(request: Request, conn: socket.socket) -> bool:
        seen["count"] += 1
        if seen["count"] == 2:
            return False
        conn.sendall(reply(200, body=b"ok"))
        return True

    target = serve(flaky)
    url = f"http://127.0.0.1:{target.port}/"
    client().send(url, "POST", {}, b"one")

    # When the next message goes out
    response = client().send(url, "POST", {}, b"two")

    # Then it is delivered on a fresh connection (at-least-once: the target saw it twice)
    assert response.status_code == 200
    assert target.accepts == 2
    assert [request.body for request in target.requests] == [b"one", b"two", b"two"]


def test_pool_cache_is_bounded(serve: Callable[..., Target], monkeypatch: pytest.MonkeyPatch) -> None:
    # Given room for one cached pool and two targets
    monkeypatch.setattr(http_client.pools, "_POOL_CACHE_SIZE", 1)
    first, second = serve(), serve()

    # When both are delivered to, then the first again
    for target in (first, second, first):
        assert client().send(f"http://127.0.0.1:{target.port}/", "POST", {}, b"").status_code == 200

    # Then the first pool was evicted (its connection closed) and a new connection was opened
    assert (first.accepts, second.accepts) == (2, 1)
    assert len(http_client.pools._pools) == 1


# --- HTTPS -----------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_pem: bytes
    cert_file: str
    key_file: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a certificate for relay-test.example signed by it."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool, names: list[str]) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
            ).add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("Relay Test CA", ca_key, "Relay Test CA", ca_key, True, [])
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = build("relay-test.example", leaf_key, "Relay Test CA", ca_key, False, ["relay-test.example"])
    directory = tmp_path_factory.mktemp("pki")
    cert_file, key_file = directory / "leaf.pem", directory / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(ca_cert.public_bytes(serialization.Encoding.PEM), str(cert_file), str(key_file))


@pytest.fixture
def tls_target(serve: Callable[..., Target], pki: Pki) -> tuple[Target, list[str | None]]:
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)  # type: ignore[assignment,misc]
    return serve(tls=context), server_names


def trusting(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=pki.ca_pem.decode())
    return context


def test_https_with_untrusted_certificate_is_unreachable(tls_target: tuple[Target, list[str | None]]) -> None:
    # Given a TLS target whose certificate no public CA signed
    target, _ = tls_target

    # When delivered with the default trust store, Then verification fails and nothing is sent
    with pytest.raises(TargetUnreachable, match="certificate verification failed"):
        client(resolver=resolver_for("127.0.0.1")).send(
            f"https://relay-test.example:{target.port}/", "POST", {}, b"secret"
        )
    assert target.requests == []


def test_https_pins_address_but_verifies_and_sends_sni_for_the_host_name(
    tls_target: tuple[Target, list[str | None]], pki: Pki
) -> None:
    # Given a TLS target with a certificate for relay-test.example, trusted by the client
    target, server_names = tls_target
    local = client(resolver=resolver_for("127.0.0.1"), ssl_context=trusting(pki))

    # When delivered to the name (pinned to 127.0.0.1)
    response = local.send(f"https://relay-test.example:{target.port}/in", "POST", {}, b"{}")

    # Then TLS used the host name for SNI and verification, and Host carries it too
    assert response.status_code == 200
    assert server_names == ["relay-test.example"]
    assert target.requests[0].header("Host") == f"relay-test.example:{target.port}"


def test_https_certificate_for_another_name_is_refused(tls_target: tuple[Target, list[str | None]], pki: Pki) -> None:
    # Given a trusted certificate for relay-test.example
    target, _ = tls_target
    local = client(resolver=resolver_for("127.0.0.1"), ssl_context=trusting(pki))

    # When another name resolves to the same address, Then the certificate does not match
    with pytest.raises(TargetUnreachable, match="TLS failed"):
        local.send(f"https://other.example:{target.port}/", "POST", {}, b"")
    assert target.requests == []


def test_https_target_that_trickles_bytes_hits_the_total_deadline(serve: Callable[..., Target], pki: Pki) -> None:
    # Given a trusted TLS target that sends its status line one byte every 50 ms, forever
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)

    def trickle(request: Request, conn: socket.socket) -> bool:
        conn.sendall(b"HTTP/1.1 200 ")
        while not target.stop.wait(0.05):
            conn.sendall(b"a")
        return False

    target = serve(trickle, tls=context)
    local = client(resolver=resolver_for("127.0.0.1"), ssl_context=trusting(pki), total_timeout=0.5)

    # When delivered, Then the watchdog ends the TLS read at about the deadline
    started = time.monotonic()
    with pytest.raises(TargetTimeout):
        local.send(f"https://relay-test.example:{target.port}/", "POST", {}, b"")
    assert 0.45 <= time.monotonic() - started < 1.0


def test_https_trickled_body_after_connection_close_ends_within_the_total_timeout(
    serve: Callable[..., Target], pki: Pki
) -> None:
    # Given a trusted TLS target that answers 200 with `Connection: close`, then trickles the body
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    target = serve(raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", then_trickle=b"a"), tls=context)
    local = client(resolver=resolver_for("127.0.0.1"), ssl_context=trusting(pki), total_timeout=1.0)

    # When delivered
    started = time.monotonic()
    response = local.send(f"https://relay-test.example:{target.port}/", "POST", {}, b"")

    # Then the watchdog ends the TLS read at the deadline: delivered, with the timeout recorded
    assert time.monotonic() - started < 1.0 + LIMIT_SLACK
    assert (response.status_code, len(target.requests)) == (200, 1)
    assert response.anomaly == "the rest of the response did not arrive within the 1s total timeout"
