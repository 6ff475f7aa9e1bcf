"""DeliveryClient: one request to a target, refusing blocked addresses (see the package docstring)."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from urllib3 import HTTPConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout

from functions.adapters.http_client.attempt import Attempt, invalid_status
from functions.adapters.http_client.failures import (
    ConnectFailed,
    DeadlinePassed,
    body_problem,
    connection_problem,
    dead_kept_alive_connection,
    invalid_response_reason,
    is_handshake_timeout,
    os_detail,
    root_cause,
    ssl_detail,
    wrapped_cause,
)
from functions.adapters.http_client.pools import POOL_MAXSIZE, PoolKey, default_ssl_context, forget_pool, pool_for
from functions.domain.exceptions import InvalidResponse, TargetBlocked, TargetTimeout, TargetUnreachable
from functions.domain.web.url_safety import IPAddress, TargetUrl, UnsafeTarget, blocked_reason, parse_target_url

DEFAULT_USER_AGENT = "Relay-Webhooks/1.0"
# Set by the client itself; a caller giving one would break the framing or the pinning.
CLIENT_OWNED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade"}
)
# Response headers kept on DeliveryResponse (values cut to this many characters).
MAX_RESPONSE_HEADER_VALUE = 512
_READ_CHUNK = 64 * 1024
# Attempts on the same address when a reused keep-alive connection turns out to be dead.
_STALE_CONNECTION_RETRIES = POOL_MAXSIZE

Resolver = Callable[..., Sequence[tuple[Any, ...]]]


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
            except ConnectFailed as failed:
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
        key: PoolKey = (target.scheme, address, target.port, target.host, context)
        where = _describe(target.host, address, target.port)
        for _ in range(_STALE_CONNECTION_RETRIES + 1):
            pool = pool_for(key)
            with Attempt(expires_at) as attempt:
                try:
                    return self._exchange(pool, target, method, headers, body, started, attempt)
                except ClosedPoolError:
                    forget_pool(key, pool)  # evicted by another thread meanwhile: take a new pool
                    continue
                except (HTTPError, http.client.HTTPException, OSError, DeadlinePassed) as error:
                    delivered_status = attempt.delivered_status
                    if delivered_status is not None:
                        return self._delivered_anyway(delivered_status, attempt, error, started)
                    if dead_kept_alive_connection(error, attempt):
                        continue  # the kept-alive connection was dead; again on a fresh one
                    raise self._failure(error, attempt, where) from None
        raise TargetUnreachable(f"{where}: every kept-alive connection was closed by the target")

    def _delivered_anyway(
        self, status: int, attempt: Attempt, error: BaseException, started: float
    ) -> DeliveryResponse:
        """A 2xx status line was read, then the response went wrong: delivered, with what went wrong."""
        if attempt.expired or isinstance(error, DeadlinePassed | ReadTimeoutError):
            anomaly = f"the rest of the response did not arrive within the {self.total_timeout:g}s total timeout"
        else:
            anomaly = invalid_response_reason(wrapped_cause(error)) or body_problem(error)
        return DeliveryResponse(
            status_code=status,
            duration_ms=int((time.monotonic() - started) * 1000),
            body_snippet="",
            retry_after_seconds=None,
            anomaly=anomaly,
        )

    def _failure(self, error: BaseException, attempt: Attempt, where: str) -> Exception:
        """The error to raise for a failed exchange (ConnectFailed when nothing was sent)."""
        if isinstance(error, NewConnectionError):  # before ConnectTimeoutError: it is a subclass
            cause = root_cause(error)
            if attempt.expired:
                return self._deadline_error(where)
            if isinstance(cause, TimeoutError):
                return ConnectFailed(self._connect_timeout_error(where))
            return ConnectFailed(TargetUnreachable(f"{where}: could not connect ({os_detail(cause)})"))
        if isinstance(error, ConnectTimeoutError) or is_handshake_timeout(error, attempt):
            return ConnectFailed(self._connect_timeout_error(where))
        if attempt.expired or isinstance(error, DeadlinePassed | ReadTimeoutError):
            return self._deadline_error(where)
        if isinstance(error, SSLError):
            return TargetUnreachable(f"{where}: TLS failed ({ssl_detail(error)})")
        status = f"HTTP {attempt.status}: " if attempt.status is not None else ""
        invalid = invalid_response_reason(wrapped_cause(error))
        if invalid is not None:
            return InvalidResponse(f"{where}: {status}{invalid}")
        if isinstance(error, ProtocolError):
            return TargetUnreachable(f"{where}: {status}{connection_problem(error)}")
        return TargetUnreachable(f"{where}: {status}{type(error).__name__}")

    def _exchange(
        self,
        pool: HTTPConnectionPool,
        target: TargetUrl,
        method: str,
        headers: dict[str, str],
        body: bytes | None,
        started: float,
        attempt: Attempt,
    ) -> DeliveryResponse:
        remaining = attempt.remaining()
        if remaining <= 0:
            raise DeadlinePassed
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
            raise DeadlinePassed
        return DeliveryResponse(
            status_code=response.status,
            duration_ms=int((time.monotonic() - started) * 1000),
            body_snippet=data.decode("utf-8", errors="replace"),
            retry_after_seconds=parse_retry_after(response.headers.get("retry-after")),
            headers=_response_headers(response),
            anomaly=invalid_status(response.status),
        )

    def _read_capped(self, response: BaseHTTPResponse, attempt: Attempt) -> tuple[bytes, bool]:
        """At most max_response_bytes of the body, and whether the body ended within them."""
        chunks: list[bytes] = []
        wanted = self.max_response_bytes + 1  # one byte more tells whether the body went on
        while wanted > 0:
            if attempt.expired:
                raise DeadlinePassed
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


def _response_headers(response: BaseHTTPResponse) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in response.headers.items():
        lowered = name.lower()
        joined = f"{result[lowered]}, {value}" if lowered in result else value
        result[lowered] = joined[:MAX_RESPONSE_HEADER_VALUE]
    return result
