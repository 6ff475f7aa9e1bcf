"""The SSRF-safe HTTP client that delivers messages to their targets.

One `send` does, in order:

1. parse the URL with `parse_target_url` (scheme, credentials, odd IPv4 spellings, literal
   addresses on the block list);
2. resolve the host now (literal addresses skip DNS) and check EVERY resolved address with
   `blocked_reason`; one blocked address refuses the whole target, before any connection;
3. connect to a checked address only: the urllib3 pool is created for the IP itself, while the
   `Host` header, TLS SNI and certificate verification use the real host name, so a second DNS
   answer (DNS rebinding) can never change where the request goes;
4. send method, headers and body as given; never follow redirects (a 3xx is a response); read at
   most `max_response_bytes` of the response body.

Timeouts: `connect_timeout` bounds connecting (and the TLS handshake); `total_timeout` is a hard
deadline for the whole attempt (resolving, connecting, TLS, sending, status line, headers, body),
enforced by a watchdog that shuts down every socket the attempt opened, so a target that trickles
bytes cannot hold the delivery Lambda past it. The watchdog keeps the socket itself, not the
connection: http.client drops the connection's socket as soon as it reads `Connection: close`,
while the response goes on reading from it.

The status line decides. Once a 2xx status line has been read, the target has taken the request:
whatever follows (more than 100 headers, a 64 KiB header line, a body that breaks off or trickles
past the deadline) the result is a DeliveryResponse with `anomaly` saying what was wrong, never an
error that would make the request be sent again. A response that is not HTTP/1.x (no status line,
a malformed one, too many or too large headers before a non-2xx status) raises InvalidResponse
with the precise reason; it stays retryable.

Pools are cached per (scheme, address, port, host name, TLS context) at module level, so warm
Lambda invocations reuse keep-alive connections. A request that fails on a reused keep-alive
connection before any response arrives (the target closed it while the Lambda was frozen) is
sent again once on a new connection; receivers dedupe on `webhook-id` (at-least-once).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    HTTPError,
    IncompleteRead,
    InvalidChunkLength,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout
from urllib3.util.ssl_match_hostname import CertificateError as HostnameMismatch

from functions.domain.exceptions import InvalidResponse, TargetBlocked, TargetTimeout, TargetUnreachable
from functions.domain.url_safety import IPAddress, TargetUrl, UnsafeTarget, blocked_reason, parse_target_url

__all__ = [
    "DEFAULT_USER_AGENT",
    "DeliveryClient",
    "DeliveryResponse",
    "InvalidResponse",
    "Resolver",
    "TargetBlocked",
    "TargetTimeout",
    "TargetUnreachable",
    "parse_retry_after",
]

DEFAULT_USER_AGENT = "Relay-Webhooks/1.0"
# Set by the client itself; a caller giving one would break the framing or the pinning.
CLIENT_OWNED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade"}
)
# Response headers kept on DeliveryResponse (values cut to this many characters).
MAX_RESPONSE_HEADER_VALUE = 512
_READ_CHUNK = 64 * 1024
_POOL_CACHE_SIZE = 64
_POOL_MAXSIZE = 4
# Attempts on the same address when a reused keep-alive connection turns out to be dead.
_STALE_CONNECTION_RETRIES = _POOL_MAXSIZE

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
# http.client's own limits on a response head, named in the reasons it gives.
_HTTP_MAX_LINE: int = getattr(http.client, "_MAXLINE", 65536)
_HTTP_MAX_HEADERS: int = getattr(http.client, "_MAXHEADERS", 100)


@dataclass
class DeliveryResponse:
    """What the target answered. `anomaly` is set when the status line was read but what followed
    was not a well-formed, complete response (the status still decides the outcome), or when the
    status code is invalid (outside 100-599: a 5xx for the outcome)."""

    status_code: int
    duration_ms: int
    body_snippet: str
    retry_after_seconds: int | None
    headers: dict[str, str] = field(default_factory=dict)
    anomaly: str | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> int | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return int(value) if len(value) <= 10 else None  # more than 300 years is not a real answer
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:  # HTTP-dates are always GMT; a naive one is malformed
        return None
    current = time.time() if now is None else now
    return max(0, round(when.timestamp() - current))


# --- the hard deadline ---------------------------------------------------------------------------


class _Attempt:
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

    def __enter__(self) -> _Attempt:
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


def _current_attempt() -> _Attempt | None:
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
        attempt = _current_attempt()
        if attempt is not None:
            # http.client refuses other versions right after this (UnknownProtocol).
            attempt.status = status if version.startswith("HTTP/1.") else None
        return version, status, reason

    def _read_status_line(self) -> tuple[str, int, str]:
        raw: bytes = self.fp.readline(_HTTP_MAX_LINE + 1)
        if len(raw) > _HTTP_MAX_LINE:
            raise http.client.LineTooLong("status line")
        if not raw:
            raise http.client.RemoteDisconnected("Remote end closed connection without response")
        line = raw.decode("iso-8859-1")
        if not raw.endswith(b"\n") and raw.startswith(b"HTTP/"[: len(raw)]):
            raise _UnfinishedStatusLine(line)  # (an answer that is not HTTP at all is HTTP/0.9)
        return _parse_status_line(line)


# 1xx answers before the final one. 100 Continue is skipped by http.client itself; 101 Switching
# Protocols is final (Relay never asks to upgrade, so it is an odd answer that is not retried).
_SKIPPED_INTERIM_STATUSES = frozenset(range(102, 200))


def _invalid_status(status: int) -> str | None:
    """What is wrong with a status code outside 100-599 (a 3-digit code the status line parses as),
    or None. RFC 9110, section 15: such codes are invalid, and a client treats the response as a
    5xx (so delivery retries it, functions/services/delivery.is_retryable_status)."""
    if 100 <= status <= 599:
        return None
    return f"invalid status code {status}: outside 100-599, treated as a server error (5xx)"


class _UnfinishedStatusLine(http.client.BadStatusLine):
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
        attempt = _current_attempt()
        if attempt is not None:
            attempt.watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        attempt = _current_attempt()
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


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


# --- pools ---------------------------------------------------------------------------------------

_PoolKey = tuple[str, str, int, str, ssl.SSLContext | None]
_pools: OrderedDict[_PoolKey, HTTPConnectionPool] = OrderedDict()
_pools_lock = threading.Lock()
_default_context: ssl.SSLContext | None = None


def default_ssl_context() -> ssl.SSLContext:
    """TLS with certificate verification against certifi's CA bundle (the system store without it)."""
    global _default_context
    with _pools_lock:
        if _default_context is None:
            try:
                import certifi

                _default_context = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - certifi ships with botocore's dependencies
                _default_context = ssl.create_default_context()
            _default_context.minimum_version = ssl.TLSVersion.TLSv1_2
        return _default_context


def _pool_for(key: _PoolKey) -> HTTPConnectionPool:
    scheme, address, port, hostname, context = key
    with _pools_lock:
        pool = _pools.get(key)
        if pool is not None:
            _pools.move_to_end(key)
            return pool
        if scheme == "https":
            tls_name = hostname.rstrip(".")
            pool = _PinnedHTTPSPool(
                address,
                port,
                maxsize=_POOL_MAXSIZE,
                block=False,
                retries=False,
                ssl_context=context,
                server_hostname=tls_name,
                assert_hostname=tls_name,
            )
        else:
            pool = _PinnedHTTPPool(address, port, maxsize=_POOL_MAXSIZE, block=False, retries=False)
        _pools[key] = pool
        while len(_pools) > _POOL_CACHE_SIZE:
            _, evicted = _pools.popitem(last=False)
            evicted.close()
        return pool


def _forget_pool(key: _PoolKey, pool: HTTPConnectionPool) -> None:
    with _pools_lock:
        if _pools.get(key) is pool:
            del _pools[key]


def close_pools() -> None:
    """Close every cached connection (tests; a long-lived process shutting down)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


# --- the client ----------------------------------------------------------------------------------


def _header_value(value: str) -> str:
    # http.client encodes header values as Latin-1. Passing the UTF-8 bytes through Latin-1 sends
    # exactly the UTF-8 encoding of what the sender gave (identical for ASCII, no error for "€").
    return value.encode("utf-8").decode("latin-1")


def _host_hint(url: str) -> str:
    """` (host: ...)` for a refused URL, when a host can be read from it (never credentials)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return ""
    return f" (host: {host[:253]!r})" if host else ""


def _describe(host: str, address: str, port: int) -> str:
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return host if host == address else f"{host} ({where})"


class DeliveryClient:
    """Sends one HTTP request to a target, refusing blocked addresses; see the module docstring."""

    def __init__(
        self,
        *,
        allow_private: bool,
        connect_timeout: float,
        total_timeout: float,
        max_response_bytes: int,
        resolver: Resolver = socket.getaddrinfo,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if connect_timeout <= 0 or total_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")
        self.allow_private = allow_private
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.max_response_bytes = max_response_bytes
        self._resolver = resolver
        self._ssl_context = ssl_context

    def send(
        self,
        url: str,
        method: str,
        headers: dict[str, str],
        body: bytes | None,
        total_timeout: float | None = None,
    ) -> DeliveryResponse:
        """One request; `total_timeout` overrides the client's for this call (a message's own timeout)."""
        if total_timeout is not None and total_timeout <= 0:
            raise ValueError("timeouts must be positive")
        started = time.monotonic()
        expires_at = started + (self.total_timeout if total_timeout is None else total_timeout)
        try:
            target = parse_target_url(url, self.allow_private)
        except UnsafeTarget as error:
            raise TargetBlocked(f"the target URL {error}{_host_hint(url)}") from None
        addresses = self._checked_addresses(target, expires_at)
        request_headers = self._request_headers(target, headers)
        last_error: TargetUnreachable | TargetTimeout | None = None
        for address in addresses:
            if time.monotonic() >= expires_at:
                break
            try:
                return self._send_to(target, str(address), method, request_headers, body, started, expires_at)
            except _ConnectFailed as failed:
                # Nothing was sent: the next checked address (if any) may answer.
                last_error = failed.error
        if last_error is None:
            last_error = self._deadline_error(target.host)
        raise last_error

    # -- steps ----------------------------------------------------------------------------------

    def _checked_addresses(self, target: TargetUrl, expires_at: float) -> list[IPAddress]:
        literal = target.literal_address
        addresses = [literal] if literal is not None else self._resolve(target, expires_at)
        if not self.allow_private:
            for address in addresses:
                reason = blocked_reason(address)
                if reason:
                    raise TargetBlocked(f"{target.host} resolves to {address}, which is blocked: {reason}")
        return addresses

    def _lookup(self, target: TargetUrl, expires_at: float) -> Sequence[tuple[Any, ...]]:
        """The resolver's answer within the deadline: the name's DNS servers belong to whoever owns
        the target, and getaddrinfo cannot be interrupted, so it runs on a daemon thread."""
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(self._resolver(target.host, target.port, type=socket.SOCK_STREAM))
            except BaseException as error:  # handed to the caller's thread below
                outcome.append(error)

        worker = threading.Thread(target=run, name="relay-resolve", daemon=True)
        worker.start()
        worker.join(max(0.0, expires_at - time.monotonic()))
        if not outcome:
            raise TargetTimeout(f"could not resolve {target.host} within the {self.total_timeout:g}s total timeout")
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]  # type: ignore[no-any-return]

    def _resolve(self, target: TargetUrl, expires_at: float) -> list[IPAddress]:
        try:
            infos = self._lookup(target, expires_at)
        except (OSError, UnicodeError) as error:
            detail = getattr(error, "strerror", None) or type(error).__name__
            raise TargetUnreachable(f"could not resolve {target.host}: {detail}") from None
        addresses: list[IPAddress] = []
        for info in infos:
            sockaddr = info[4]
            try:
                address = ipaddress.ip_address(sockaddr[0])
            except (ValueError, IndexError, TypeError):
                raise TargetBlocked(f"{target.host} resolves to an unreadable address {sockaddr!r}") from None
            scope = sockaddr[3] if len(sockaddr) >= 4 else 0
            if isinstance(address, ipaddress.IPv6Address) and scope and not address.scope_id:
                address = ipaddress.IPv6Address(f"{address}%{scope}")
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise TargetUnreachable(f"could not resolve {target.host}: no addresses")
        return addresses

    @staticmethod
    def _request_headers(target: TargetUrl, headers: dict[str, str]) -> dict[str, str]:
        result = {"Host": target.host_header}
        for name, value in headers.items():
            if name.lower() in CLIENT_OWNED_HEADERS:
                raise ValueError(f"header {name!r} is set by the delivery client and cannot be given")
            result[name] = _header_value(value)
        if not any(name.lower() == "user-agent" for name in headers):
            result["User-Agent"] = DEFAULT_USER_AGENT
        return result

    def _send_to(
        self,
        target: TargetUrl,
        address: str,
        method: str,
        headers: dict[str, str],
        body: bytes | None,
        started: float,
        expires_at: float,
    ) -> DeliveryResponse:
        context = (self._ssl_context or default_ssl_context()) if target.scheme == "https" else None
        key: _PoolKey = (target.scheme, address, target.port, target.host, context)
        where = _describe(target.host, address, target.port)
        for _ in range(_STALE_CONNECTION_RETRIES + 1):
            pool = _pool_for(key)
            with _Attempt(expires_at) as attempt:
                try:
                    return self._exchange(pool, target, method, headers, body, started, attempt)
                except ClosedPoolError:
                    _forget_pool(key, pool)  # evicted by another thread meanwhile: take a new pool
                    continue
                except (HTTPError, http.client.HTTPException, OSError, _DeadlinePassed) as error:
                    delivered_status = attempt.delivered_status
                    if delivered_status is not None:
                        return self._delivered_anyway(delivered_status, attempt, error, started)
                    if _dead_kept_alive_connection(error, attempt):
                        continue  # the kept-alive connection was dead; again on a fresh one
                    raise self._failure(error, attempt, where) from None
        raise TargetUnreachable(f"{where}: every kept-alive connection was closed by the target")

    def _delivered_anyway(
        self, status: int, attempt: _Attempt, error: BaseException, started: float
    ) -> DeliveryResponse:
        """A 2xx status line was read, then the response went wrong: delivered, with what went wrong."""
        if attempt.expired or isinstance(error, _DeadlinePassed | ReadTimeoutError):
            anomaly = f"the rest of the response did not arrive within the {self.total_timeout:g}s total timeout"
        else:
            anomaly = _invalid_response_reason(_cause(error)) or _body_problem(error)
        return DeliveryResponse(
            status_code=status,
            duration_ms=int((time.monotonic() - started) * 1000),
            body_snippet="",
            retry_after_seconds=None,
            anomaly=anomaly,
        )

    def _failure(self, error: BaseException, attempt: _Attempt, where: str) -> Exception:
        """The error to raise for a failed exchange (_ConnectFailed when nothing was sent)."""
        if isinstance(error, NewConnectionError):  # before ConnectTimeoutError: it is a subclass
            cause = _root_cause(error)
            if attempt.expired:
                return self._deadline_error(where)
            if isinstance(cause, TimeoutError):
                return _ConnectFailed(self._connect_timeout_error(where))
            return _ConnectFailed(TargetUnreachable(f"{where}: could not connect ({_os_detail(cause)})"))
        if isinstance(error, ConnectTimeoutError) or _is_handshake_timeout(error, attempt):
            return _ConnectFailed(self._connect_timeout_error(where))
        if attempt.expired or isinstance(error, _DeadlinePassed | ReadTimeoutError):
            return self._deadline_error(where)
        if isinstance(error, SSLError):
            return TargetUnreachable(f"{where}: TLS failed ({_ssl_detail(error)})")
        status = f"HTTP {attempt.status}: " if attempt.status is not None else ""
        invalid = _invalid_response_reason(_cause(error))
        if invalid is not None:
            return InvalidResponse(f"{where}: {status}{invalid}")
        if isinstance(error, ProtocolError):
            return TargetUnreachable(f"{where}: {status}{_connection_problem(error)}")
        return TargetUnreachable(f"{where}: {status}{type(error).__name__}")

    def _exchange(
        self,
        pool: HTTPConnectionPool,
        target: TargetUrl,
        method: str,
        headers: dict[str, str],
        body: bytes | None,
        started: float,
        attempt: _Attempt,
    ) -> DeliveryResponse:
        remaining = attempt.remaining()
        if remaining <= 0:
            raise _DeadlinePassed
        timeout = Timeout(connect=min(self.connect_timeout, remaining), read=remaining)
        response = pool.urlopen(
            method,
            target.request_target,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            timeout=timeout,
            preload_content=False,
            decode_content=False,
        )
        try:
            data, complete = self._read_capped(response, attempt)
            in_time = attempt.detach()  # from here on the watchdog must not touch this connection
        except BaseException:
            response.close()
            response.release_conn()
            raise
        if complete and in_time:
            response.release_conn()  # body fully read: the connection goes back for keep-alive
        else:
            response.close()  # unread bytes remain on the wire: this connection cannot be reused
            response.release_conn()
        if not in_time:
            raise _DeadlinePassed
        return DeliveryResponse(
            status_code=response.status,
            duration_ms=int((time.monotonic() - started) * 1000),
            body_snippet=data.decode("utf-8", errors="replace"),
            retry_after_seconds=parse_retry_after(response.headers.get("retry-after")),
            headers=_response_headers(response),
            anomaly=_invalid_status(response.status),
        )

    def _read_capped(self, response: BaseHTTPResponse, attempt: _Attempt) -> tuple[bytes, bool]:
        """At most max_response_bytes of the body, and whether the body ended within them."""
        chunks: list[bytes] = []
        wanted = self.max_response_bytes + 1  # one byte more tells whether the body went on
        while wanted > 0:
            if attempt.expired:
                raise _DeadlinePassed
            chunk = response.read(min(_READ_CHUNK, wanted))
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        data = b"".join(chunks)
        complete = len(data) <= self.max_response_bytes
        return data[: self.max_response_bytes], complete

    # -- errors ---------------------------------------------------------------------------------

    def _connect_timeout_error(self, where: str) -> TargetTimeout:
        return TargetTimeout(f"{where}: connecting timed out after {self.connect_timeout:g}s")

    def _deadline_error(self, where: str) -> TargetTimeout:
        return TargetTimeout(f"{where}: no complete answer within the {self.total_timeout:g}s total timeout")


class _DeadlinePassed(Exception):
    """The total timeout ran out between two steps."""


class _ConnectFailed(Exception):
    """Connecting to one address failed before anything was sent."""

    def __init__(self, error: TargetUnreachable | TargetTimeout) -> None:
        super().__init__(str(error))
        self.error = error


def _response_headers(response: BaseHTTPResponse) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in response.headers.items():
        lowered = name.lower()
        joined = f"{result[lowered]}, {value}" if lowered in result else value
        result[lowered] = joined[:MAX_RESPONSE_HEADER_VALUE]
    return result


def _root_cause(error: BaseException) -> BaseException:
    seen = 0
    while seen < 10:
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error, seen = inner, seen + 1
    return error


def _os_detail(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__


def _cause(error: BaseException) -> BaseException:
    """The http.client/socket error inside urllib3's ProtocolError("Connection aborted.", cause)."""
    if isinstance(error, ProtocolError) and len(error.args) > 1 and isinstance(error.args[1], BaseException):
        return error.args[1]
    return error


def _is_broken_body(error: BaseException) -> bool:
    """True when the failure came after the response began (not a dead kept-alive connection)."""
    return "Connection broken" in str(error) or isinstance(error, IncompleteRead | InvalidChunkLength)


def _is_handshake_timeout(error: BaseException, attempt: _Attempt) -> bool:
    """The TLS handshake ran out of its connect timeout (urllib3 calls it a read timeout)."""
    return isinstance(error, ReadTimeoutError) and not attempt.expired and "handshake" in str(_root_cause(error))


def _dead_kept_alive_connection(error: BaseException, attempt: _Attempt) -> bool:
    """A reused connection that failed before the target answered anything: the target closed it
    while it sat in the pool (a frozen Lambda), so the request can go out again on a new one."""
    if not attempt.reused or attempt.status is not None or attempt.expired or _is_broken_body(error):
        return False
    return isinstance(_cause(error), ConnectionError)  # reset (RemoteDisconnected too), broken pipe, aborted


def _invalid_response_reason(cause: BaseException) -> str | None:
    """The precise reason for an answer that is not a well-formed HTTP/1.x response head, or None."""
    if isinstance(cause, http.client.RemoteDisconnected):  # closed before any byte: not a response
        return None
    if isinstance(cause, http.client.LineTooLong):
        if str(cause).endswith("status line"):
            return f"invalid status line: longer than {_HTTP_MAX_LINE} bytes"
        if str(cause).endswith("header line"):
            return f"response header too large: a header line over {_HTTP_MAX_LINE} bytes"
        return None  # a chunk-size or trailer line: a broken body
    if isinstance(cause, http.client.UnknownProtocol):
        return f"invalid status line: unsupported HTTP version {str(cause.args[0])[:40]!r}"
    if isinstance(cause, _UnfinishedStatusLine):
        return f"invalid status line: the connection ended in the middle of it ({cause.args[0][:80]!r})"
    if isinstance(cause, http.client.BadStatusLine):
        line = str(cause.args[0] if cause.args else "").strip()
        if line.startswith("HTTP/"):
            return f"invalid status line {line[:80]!r}"
        return f"HTTP/0.9 response: the answer has no status line (it begins {line[:40]!r})"
    if type(cause) is http.client.HTTPException and "more than" in str(cause):
        return f"too many response headers: more than {_HTTP_MAX_HEADERS}"
    return None


def _body_problem(error: BaseException) -> str:
    cause = _cause(error)
    if isinstance(cause, InvalidChunkLength):
        return "the response body broke off: invalid chunked encoding"
    if isinstance(cause, http.client.IncompleteRead | IncompleteRead):
        # http.client reports a body shorter than its Content-Length and a malformed chunk alike.
        return f"the response body is incomplete or badly framed ({cause!r})"
    if _is_broken_body(error):
        return "the response body broke off: the connection broke while reading it"
    return f"the response broke off after the status line ({type(cause).__name__})"


def _connection_problem(error: ProtocolError) -> str:
    cause = _cause(error)
    if _is_broken_body(error):
        return "the connection broke while reading the response"
    if isinstance(cause, http.client.RemoteDisconnected):
        return "the target closed the connection without a response"
    if type(cause) is ConnectionResetError:
        return "connection reset by the target"
    if isinstance(cause, BrokenPipeError):
        return "the target closed the connection while the request was sent"
    return "the connection failed"


def _ssl_detail(error: SSLError) -> str:
    cause = error.args[0] if error.args else None
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {cause.verify_message}"
    if isinstance(cause, HostnameMismatch | ssl.CertificateError):
        return "the certificate does not match the host name"
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return str(cause.reason).lower().replace("_", " ")
    return "handshake failed"
