"""Targets' names: the origin of a URL, an origin as a sender writes it, and the slash-free id of a
target in a request path. No AWS here: the `relay` CLI's client uses it too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# The origin of a sender's default limits.
DEFAULT_ORIGIN = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The longest DNS name (an IPv6 literal is shorter).
MAX_HOST_LENGTH = 253


def origin_of(url: str) -> str:
    """The target of a URL: `scheme://host[:port]`, scheme and host lowercased, default port dropped.

    Raises ValueError for anything that is not an absolute http(s) URL with a host.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("not an http(s) URL")
    host = parts.hostname  # lowercased, without user info or brackets
    if not host:
        raise ValueError("the URL has no host")
    if len(host) > MAX_HOST_LENGTH:  # keeps every key built from an origin far below DynamoDB's limits
        raise ValueError(f"the host is longer than {MAX_HOST_LENGTH} characters")
    port = parts.port  # ValueError when it is not a number in range
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != _DEFAULT_PORTS[scheme] else "")


def parse_origin(text: str) -> str:
    """An origin as a sender writes it (`PUT /targets`), normalised; `*` stays `*`.

    Only scheme, host and port (and an optional trailing `/`): a path, query, fragment or user
    info would suggest limits per URL, which targets are not. Raises ValueError with the reason.
    """
    if text == DEFAULT_ORIGIN:
        return text
    parts = urlsplit(text.strip())
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain user info")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError("must be an origin only (scheme://host[:port]), without a path, query or fragment")
    try:
        return origin_of(text)
    except ValueError as error:
        raise ValueError(f"must be an http:// or https:// origin ({error})") from None


def target_id(origin: str) -> str:
    """The id of a target in `DELETE /targets/{id}`: its origin without the `//`, e.g.
    `https:example.com`, `http:127.0.0.1:9000` (`*` for the sender's default).

    API Gateway decodes `%2F` before it matches a route, so no path parameter can carry a `/`
    (an origin percent-encoded whole is refused there with 404): the id has none to carry.
    """
    scheme, separator, rest = origin.partition("://")
    return f"{scheme}:{rest}" if separator else origin


def origin_of_id(raw_id: str) -> str:
    """The origin a target id names (the id form, `*`, or an origin written whole where a caller
    could pass one). Raises ValueError when it names none."""
    text = raw_id.strip()
    if text == DEFAULT_ORIGIN or "://" in text:
        return parse_origin(text)
    scheme, separator, rest = text.partition(":")
    if not separator or scheme.lower() not in ("http", "https") or not rest or "/" in rest:
        raise ValueError("not a target id")
    return parse_origin(f"{scheme}://{rest}")
