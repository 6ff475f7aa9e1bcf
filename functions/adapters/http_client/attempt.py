"""One attempt on the wire: its hard deadline (a watchdog that shuts down every socket the attempt
opened), the status line as soon as it is read, and connections that report their sockets and reuse."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection

# http.client's own limits on a response head, named in the reasons it gives.
HTTP_MAX_LINE: int = getattr(http.client, "_MAXLINE", 65536)
HTTP_MAX_HEADERS: int = getattr(http.client, "_MAXHEADERS", 100)


class Attempt:
    """One request in flight: its deadline, its sockets, whether its connection was reused, and the
    status line the target answered (if any)."""

    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.expired = False
        self.reused = False
        self.status: int | None = None  # from an HTTP/1.x status line, once read
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, expires_at - time.monotonic()), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Attempt:
        self._timer.start()
        _current.attempt = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _current.attempt = None
        self._timer.cancel()

    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    @property
    def delivered_status(self) -> int | None:
        """The status when a 2xx status line was read: the target took the request, whatever follows."""
        return self.status if self.status is not None and 200 <= self.status <= 299 else None

    def watch(self, sock: socket.socket | None) -> None:
        """Shut `sock` down at the deadline (at once if it has passed)."""
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def detach(self) -> bool:
        """Stop watching (the connection is about to go back to the pool); False if too late."""
        with self._lock:
            self._sockets.clear()
            return not self.expired

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown on purpose: SSLSocket.shutdown would tear down the SSL object under
    # the reading thread. Shutting the descriptor down wakes a blocked recv (or send) at once.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current = threading.local()


def current_attempt() -> Attempt | None:
    return getattr(_current, "attempt", None)


class _ObservedResponse(http.client.HTTPResponse):
    """Reads the status line itself and tells the attempt the status before the headers are parsed:
    if they turn out too many or too large, the attempt still knows the target took the request.

    Unlike http.client, a status line must be complete (end in LF): when the connection ends (or
    the deadline cuts it) in the middle of one, nothing was answered. Interim responses (102
    Processing, 103 Early Hints) are skipped like 100 Continue: the final status decides."""

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = self._read_status_line()
        while status in _SKIPPED_INTERIM_STATUSES:
            http.client.parse_headers(self.fp)
            version, status, reason = self._read_status_line()
        attempt = current_attempt()
        if attempt is not None:
            # http.client refuses other versions right after this (UnknownProtocol).
            attempt.status = status if version.startswith("HTTP/1.") else None
        return version, status, reason

    def _read_status_line(self) -> tuple[str, int, str]:
        raw: bytes = self.fp.readline(HTTP_MAX_LINE + 1)
        if len(raw) > HTTP_MAX_LINE:
            raise http.client.LineTooLong("status line")
        if not raw:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        line = raw.decode("iso-8859-1")
        if not raw.endswith(b"\n") and raw.startswith(b"HTTP/"[: len(raw)]):
            raise UnfinishedStatusLine(line)  # (an answer that is not HTTP at all is HTTP/0.9)
        return _parse_status_line(line)


# 1xx answers before the final one. 100 Continue is skipped by http.client itself; 101 Switching
# Protocols is final (Relay never asks to upgrade, so it is an odd answer that is not retried).
_SKIPPED_INTERIM_STATUSES = frozenset(range(102, 200))


def invalid_status(status: int) -> str | None:
    """What is wrong with a status code outside 100-599 (a 3-digit code the status line parses as),
    or None. RFC 9110, section 15: such codes are invalid, and a client treats the response as a
    5xx (so delivery retries it, functions/services/delivery.is_retryable_status)."""
    if 100 <= status <= 599:
        return None
    return f"invalid status code {status}: outside 100-599, treated as a server error (5xx)"


class UnfinishedStatusLine(http.client.BadStatusLine):
    """The connection ended before the status line did."""


def _parse_status_line(line: str) -> tuple[str, int, str]:
    """`HTTP/x.y SP code [SP reason]`, as leniently as http.client reads it."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise http.client.BadStatusLine(line)
    code = parts[1]
    if not (len(code) == 3 and code.isascii() and code.isdigit()) or int(code) < 100:
        raise http.client.BadStatusLine(line)
    return parts[0], int(code), parts[2] if len(parts) > 2 else ""


class _TrackedConnectionMixin:
    """Gives every socket to the thread's attempt (deadline watchdog) and detects reuse."""

    sock: Any
    _relay_requests = 0
    response_class: type[http.client.HTTPResponse] = _ObservedResponse

    def connect(self) -> None:
        # Connecting and the TLS handshake are bounded by the connect timeout (CPython gives the
        # whole handshake one deadline), so watching starts once connected.
        super().connect()  # type: ignore[misc]
        self._relay_requests = 0
        attempt = current_attempt()
        if attempt is not None:
            attempt.watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        attempt = current_attempt()
        if attempt is not None:
            attempt.reused = self.sock is not None and self._relay_requests > 0
            attempt.watch(self.sock)
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._relay_requests += 1


class _TrackedHTTPConnection(_TrackedConnectionMixin, HTTPConnection):
    pass


class _TrackedHTTPSConnection(_TrackedConnectionMixin, HTTPSConnection):
    pass


class PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection
