"""What went wrong with an exchange, in words: the errors urllib3 and http.client raise, read for
whether the target answered, and why an answer was not a well-formed HTTP/1.x response."""

from __future__ import annotations

import http.client
import ssl

from urllib3.exceptions import (
    IncompleteRead,
    InvalidChunkLength,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.ssl_match_hostname import CertificateError as HostnameMismatch

from functions.adapters.http_client.attempt import HTTP_MAX_HEADERS, HTTP_MAX_LINE, Attempt, UnfinishedStatusLine
from functions.domain.exceptions import TargetTimeout, TargetUnreachable


class DeadlinePassed(Exception):
    """The total timeout ran out between two steps."""


class ConnectFailed(Exception):
    """Connecting to one address failed before anything was sent."""

    def __init__(self, error: TargetUnreachable | TargetTimeout) -> None:
        super().__init__(str(error))
        self.error = error


def root_cause(error: BaseException) -> BaseException:
    seen = 0
    while seen < 10:
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error, seen = inner, seen + 1
    return error


def os_detail(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__


def wrapped_cause(error: BaseException) -> BaseException:
    """The http.client/socket error inside urllib3's ProtocolError("Connection aborted.", cause)."""
    if isinstance(error, ProtocolError) and len(error.args) > 1 and isinstance(error.args[1], BaseException):
        return error.args[1]
    return error


def _is_broken_body(error: BaseException) -> bool:
    """True when the failure came after the response began (not a dead kept-alive connection)."""
    return "Connection broken" in str(error) or isinstance(error, IncompleteRead | InvalidChunkLength)


def is_handshake_timeout(error: BaseException, attempt: Attempt) -> bool:
    """The TLS handshake ran out of its connect timeout (urllib3 calls it a read timeout)."""
    return isinstance(error, ReadTimeoutError) and not attempt.expired and "handshake" in str(root_cause(error))


def dead_kept_alive_connection(error: BaseException, attempt: Attempt) -> bool:
    """A reused connection that failed before the target answered anything: the target closed it
    while it sat in the pool (a frozen Lambda), so the request can go out again on a new one."""
    if not attempt.reused or attempt.status is not None or attempt.expired or _is_broken_body(error):
        return False
    return isinstance(wrapped_cause(error), ConnectionError)  # reset (RemoteDisconnected too), broken pipe, aborted


def invalid_response_reason(cause: BaseException) -> str | None:
    """The precise reason for an answer that is not a well-formed HTTP/1.x response head, or None."""
    if isinstance(cause, http.client.RemoteDisconnected):  # closed before any byte: not a response
        return None
    if isinstance(cause, http.client.LineTooLong):
        if str(cause).endswith("status line"):
            return f"invalid status line: longer than {HTTP_MAX_LINE} bytes"
        if str(cause).endswith("header line"):
            return f"response header too large: a header line over {HTTP_MAX_LINE} bytes"
        return None  # a chunk-size or trailer line: a broken body
    if isinstance(cause, http.client.UnknownProtocol):
        return f"invalid status line: unsupported HTTP version {str(cause.args[0])[:40]!r}"
    if isinstance(cause, UnfinishedStatusLine):
        return f"invalid status line: the connection ended in the middle of it ({cause.args[0][:80]!r})"
    if isinstance(cause, http.client.BadStatusLine):
        line = str(cause.args[0] if cause.args else "").strip()
        if line.startswith("HTTP/"):
            return f"invalid status line {line[:80]!r}"
        return f"HTTP/0.9 response: the answer has no status line (it begins {line[:40]!r})"
    if type(cause) is http.client.HTTPException and "more than" in str(cause):
        return f"too many response headers: more than {HTTP_MAX_HEADERS}"
    return None


def body_problem(error: BaseException) -> str:
    cause = wrapped_cause(error)
    if isinstance(cause, InvalidChunkLength):
        return "the response body broke off: invalid chunked encoding"
    if isinstance(cause, http.client.IncompleteRead | IncompleteRead):
        # http.client reports a body shorter than its Content-Length and a malformed chunk alike.
        return f"the response body is incomplete or badly framed ({cause!r})"
    if _is_broken_body(error):
        return "the response body broke off: the connection broke while reading it"
    return f"the response broke off after the status line ({type(cause).__name__})"


def connection_problem(error: ProtocolError) -> str:
    cause = wrapped_cause(error)
    if _is_broken_body(error):
        return "the connection broke while reading the response"
    if isinstance(cause, http.client.RemoteDisconnected):
        return "the target closed the connection without a response"
    if type(cause) is ConnectionResetError:
        return "connection reset by the target"
    if isinstance(cause, BrokenPipeError):
        return "the target closed the connection while the request was sent"
    return "the connection failed"


def ssl_detail(error: SSLError) -> str:
    cause = error.args[0] if error.args else None
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {cause.verify_message}"
    if isinstance(cause, HostnameMismatch | ssl.CertificateError):
        return "the certificate does not match the host name"
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return str(cause.reason).lower().replace("_", " ")
    return "handshake failed"
