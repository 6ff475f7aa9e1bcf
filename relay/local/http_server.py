"""A strict HTTP/1.1 server for `relay dev`, framed by h11 (python-hyper), one thread per connection.

Why: `http.server` let a GET's body be parsed as a second request, took the first of two
`Content-Length` headers, hung forever on a body shorter than announced and answered malformed
requests with HTML pages, some without a status line. Here h11 frames every message (a body is
always read as a body, never as a request), and this module adds what h11 leaves to its user:

- limits: header count and total size (431), URI length (414), body size (413);
- `Transfer-Encoding` together with `Content-Length` (400); HTTP versions other than 1.0/1.1 (505);
- a read timeout for a whole request once its first byte arrived (408) and an idle timeout
  between keep-alive requests (the connection is closed without an answer);
- every refusal answered in Relay's JSON error shape with a requestId, and the connection closed,
  since its framing can no longer be trusted.

The application is one function from an `HttpRequest` to an `HttpResponse` (relay/local/server.py).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import h11

from functions.services.http_api.responses import SYSTEM_ERROR, error_response

SUPPORTED_VERSIONS = (b"1.0", b"1.1")
RECEIVE_CHUNK = 65536
_QUOTED_INPUT = re.compile(r":?\s*(?:bytearray\()?b['\"].*$", re.DOTALL)


@dataclass(frozen=True)
class ServerLimits:
    """The server's limits and timeouts (README, "relay dev's HTTP server")."""

    max_body_bytes: int
    read_timeout: float = 10.0  # a whole request (head and body), from its first byte
    idle_timeout: float = 5.0  # between two requests on a keep-alive connection
    max_header_count: int = 100
    max_header_bytes: int = 16 * 1024  # names, values and separators, all headers together
    max_uri_bytes: int = 8 * 1024

    @property
    def max_head_bytes(self) -> int:
        """What h11 may buffer while a request head is incomplete: a request line and the headers."""
        return self.max_uri_bytes + self.max_header_bytes + 1024


@dataclass(frozen=True)
class HttpRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    client_ip: str
    request_id: str

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        pairs = parse_qs(urlsplit(self.target).query, keep_blank_values=True)
        return {name: values[-1] for name, values in pairs.items()}

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Application = Callable[[HttpRequest], HttpResponse]


class Refusal(Exception):
    """A request refused at the protocol level; the connection is closed after the answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _IdleClose(Exception):
    """The peer went away, or sent nothing within the idle timeout: close without an answer."""


# Protocol-level refusals: HTTP status -> Relay error code.
REFUSAL_CODES = {
    400: "BAD_REQUEST",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    431: "HEADERS_TOO_LARGE",
    501: "NOT_IMPLEMENTED",
    505: "HTTP_VERSION_NOT_SUPPORTED",
}


def refusal(status: int, message: str) -> Refusal:
    return Refusal(status, REFUSAL_CODES[status], message)


class StrictHttpServer:
    """Listens on `address`, serves each connection in its own thread with `application`."""

    def __init__(self, address: tuple[str, int], application: Application, limits: ServerLimits) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(address)
        self._socket.listen(256)  # bursts of concurrent senders must not be reset
        self._socket.settimeout(0.2)
        self.server_address: tuple[str, int] = self._socket.getsockname()[:2]
        self.application = application
        self.limits = limits
        self._stopped = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="relay-http", daemon=True)
        thread.start()
        return thread

    def serve_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, peer = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by shutdown()
            with self._lock:
                self._connections.add(connection)
            worker = _Connection(self, connection, str(peer[0]))
            threading.Thread(target=worker.run, name="relay-http-connection", daemon=True).start()

    def forget(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def shutdown(self) -> None:
        """Stop accepting, and end the open connections (their requests in flight get no answer)."""
        self._stopped.set()
        with self._lock:
            open_connections = list(self._connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._stopped.set()
        self._socket.close()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _error_bytes(status: int, code: str, message: str) -> bytes:
    """A complete refusal as bytes: status line, JSON error body, `Connection: close`."""
    request_id = str(uuid.uuid4())
    body = str(error_response(status, code, message, request_id)["body"]).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {_reason(status)}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Connection:
    """One client connection: requests read one at a time, each answered before the next is read."""

    def __init__(self, server: StrictHttpServer, sock: socket.socket, client_ip: str) -> None:
        self.server, self.sock, self.client_ip = server, sock, client_ip
        self.limits = server.limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
        self._deadline: float | None = None

    def run(self) -> None:
        try:
            while self._serve_one():
                self.h11.start_next_cycle()
        except Refusal as refused:
            self._send_raw(_error_bytes(refused.status, refused.code, refused.message))
        except (_IdleClose, OSError, h11.LocalProtocolError):
            pass
        finally:
            self.server.forget(self.sock)
            self._close()

    def _serve_one(self) -> bool:
        """Read, answer one request; True when the connection may carry another."""
        request, body = self._read_request()
        incoming = HttpRequest(
            method=request.method.decode("ascii"),
            target=request.target.decode("latin-1"),
            headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers],
            body=body,
            client_ip=self.client_ip,
            request_id=str(uuid.uuid4()),
        )
        try:
            response = self.server.application(incoming)
        except Exception:
            # A bug of a route must still answer, in Relay's shape and without its traceback.
            answer = error_response(500, SYSTEM_ERROR, "Relay could not process the request.", incoming.request_id)
            response = HttpResponse(500, str(answer["body"]), headers={"x-request-id": incoming.request_id})
        self._send_response(response, head_only=request.method == b"HEAD")
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    # -- reading ------------------------------------------------------------------------------------

    def _read_request(self) -> tuple[h11.Request, bytes]:
        # The read timeout runs from the request's first byte (already here, or after an idle wait).
        self._deadline = time.monotonic() + self.limits.read_timeout if self._buffered() else None
        event = self._next_event()
        if not isinstance(event, h11.Request):
            raise _IdleClose()  # ConnectionClosed before a request
        self._check_head(event)
        chunks: list[bytes] = []
        received = 0
        if self.h11.they_are_waiting_for_100_continue:
            go_on = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            self.sock.sendall(self.h11.send(go_on) or b"")
        while True:
            part = self._next_event()
            if isinstance(part, h11.EndOfMessage):
                return event, b"".join(chunks)
            if isinstance(part, h11.Data):
                received += len(part.data)
                if received > self.limits.max_body_bytes:
                    raise refusal(413, f"The request body is over the limit of {self.limits.max_body_bytes} bytes.")
                chunks.append(bytes(part.data))
            elif isinstance(part, h11.ConnectionClosed):
                raise _IdleClose()

    def _buffered(self) -> bool:
        return bool(self.h11.trailing_data[0])

    def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                raise self._classify(error) from None
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if self._deadline is None:
                data = self._receive(self.limits.idle_timeout, idle=True)
                self._deadline = time.monotonic() + self.limits.read_timeout
            else:
                data = self._receive(self._deadline - time.monotonic(), idle=False)
            self.h11.receive_data(data)

    def _receive(self, seconds: float, idle: bool) -> bytes:
        if seconds <= 0:
            raise refusal(408, f"The request was not received within {self.limits.read_timeout:g} s.")
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(RECEIVE_CHUNK)
        except TimeoutError:
            if idle:
                raise _IdleClose() from None
            raise refusal(408, f"The request was not received within {self.limits.read_timeout:g} s.") from None

    def _classify(self, error: h11.RemoteProtocolError) -> Refusal:
        """h11's refusal as Relay's: a request line over the URI limit is 414, not h11's 431."""
        status = error.error_status_hint
        if status == 431:
            first_line = self.h11.trailing_data[0].split(b"\r\n", 1)[0]
            if len(first_line) > self.limits.max_uri_bytes:
                return refusal(414, f"The request URI is over the limit of {self.limits.max_uri_bytes} bytes.")
            return refusal(431, f"The request headers are over the limit of {self.limits.max_header_bytes} bytes.")
        if status not in REFUSAL_CODES:
            status = 400
        reason = _QUOTED_INPUT.sub("", str(error))  # h11's reason, without the bytes it quotes
        return refusal(status, f"The request is not valid HTTP/1.1 ({reason}).")

    def _check_head(self, request: h11.Request) -> None:
        """What h11 accepts and Relay does not: other versions, both framings, oversized parts."""
        if request.http_version not in SUPPORTED_VERSIONS:
            raise refusal(505, f"HTTP/{request.http_version.decode('ascii')} is not supported; use HTTP/1.1.")
        if len(request.target) > self.limits.max_uri_bytes:
            raise refusal(414, f"The request URI is over the limit of {self.limits.max_uri_bytes} bytes.")
        names = [name for name, _ in request.headers]
        if len(names) > self.limits.max_header_count:
            raise refusal(431, f"The request has {len(names)} headers; the limit is {self.limits.max_header_count}.")
        size = sum(len(name) + len(value) + 4 for name, value in request.headers)
        if size > self.limits.max_header_bytes:
            raise refusal(431, f"The request headers are over the limit of {self.limits.max_header_bytes} bytes.")
        if b"transfer-encoding" in names and b"content-length" in names:
            raise refusal(400, "Transfer-Encoding and Content-Length must not both be given.")
        length = next((int(value) for name, value in request.headers if name == b"content-length"), 0)
        if length > self.limits.max_body_bytes:
            raise refusal(413, f"The request is {length} bytes; the limit is {self.limits.max_body_bytes}.")

    # -- writing ------------------------------------------------------------------------------------

    def _send_response(self, response: HttpResponse, head_only: bool) -> None:
        payload = response.body.encode("utf-8", "surrogateescape")
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(payload))),
            ("Server", "relay-dev"),
            *response.headers.items(),
        ]
        if self.h11.their_state is not h11.DONE:
            headers.append(("Connection", "close"))
        head = h11.Response(status_code=response.status, headers=headers, reason=_reason(response.status))
        out = self.h11.send(head) or b""
        if payload and not head_only:
            out += self.h11.send(h11.Data(data=payload)) or b""
        out += self.h11.send(h11.EndOfMessage()) or b""
        self.sock.sendall(out)

    def _send_raw(self, data: bytes) -> None:
        try:
            self.sock.settimeout(self.limits.read_timeout)
            self.sock.sendall(data)
        except OSError:
            pass

    def _close(self) -> None:
        """Half-close, then drain briefly: closing with unread bytes would reset the connection and
        could destroy the answer before the client reads it."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(0.5)
            drained = 0
            while drained < 1024 * 1024 and (chunk := self.sock.recv(RECEIVE_CHUNK)):
                drained += len(chunk)
        except OSError:
            pass
        self.sock.close()
