"""Target URL rules and the SSRF address block list.

Used twice: at validation (URL shape, literal addresses, odd IPv4 spellings) and at delivery time
(every resolved address of the host is checked, then the connection is pinned to it). The block
list is explicit on purpose: `ipaddress.is_private`/`is_global` have misclassified ranges before
(CVE-2024-4032), and Relay must also unwrap IPv4-mapped, NAT64, 6to4 and IPv4-compatible forms.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

BLOCKED_NETWORKS: tuple[tuple[str, str], ...] = (
    # IPv4
    ("0.0.0.0/8", "this-network"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (includes the instance metadata service 169.254.169.254)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    # IPv6
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation (RFC 8215)"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments (includes Teredo)"),
    ("2001:db8::/32", "documentation"),
    ("fc00::/7", "unique local (includes the instance metadata service fd00:ec2::254)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
    # Everything outside 2000::/3 (global unicast) is reserved, e.g. the SIIT form ::ffff:0:a.b.c.d.
    # Listed last so that the specific reasons above win; embedded IPv4 forms are unwrapped first.
    ("::/3", "reserved (outside global unicast 2000::/3)"),
    ("4000::/2", "reserved (outside global unicast 2000::/3)"),
    ("8000::/1", "reserved (outside global unicast 2000::/3)"),
)
_BLOCKED = tuple((ipaddress.ip_network(cidr), reason) for cidr, reason in BLOCKED_NETWORKS)

# IPv6 ranges that embed an IPv4 address; the embedded address is checked against the list.
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Only the well-known /96 prefix is unwrapped: in the local-use 64:ff9b:1::/48 (RFC 8215) the IPv4
# address may sit at other bit offsets (RFC 6052), so that whole range is blocked instead.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"),)
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9A-Fa-f]*|[0-9]+)$")
_CANONICAL_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address in _IPV4_MAPPED:
        return address.ipv4_mapped
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why delivering to `address` is refused, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "scoped IPv6 address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = blocked_reason(embedded)
            return f"IPv4 embedded in IPv6 is {inner}" if inner else None
    for network, reason in _BLOCKED:
        if address.version == network.version and address in network:
            return reason
    return None


@dataclass(frozen=True)
class TargetUrl:
    """A parsed target URL. `literal_address` is set when the host is an IP literal."""

    scheme: str
    host: str
    port: int
    literal_address: IPAddress | None
    parts: SplitResult

    @property
    def request_target(self) -> str:
        """Path and query as sent on the request line (the fragment never leaves the relay)."""
        path = self.parts.path or "/"
        return f"{path}?{self.parts.query}" if self.parts.query else path

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"


class UnsafeTarget(ValueError):
    """The URL breaks a rule; the message says which."""


def parse_target_url(url: str, allow_private: bool) -> TargetUrl:
    """Parse and check a target URL, raising UnsafeTarget with a reason a sender can act on."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeTarget("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeTarget(f"is not a valid URL ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeTarget("must use the http or https scheme")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeTarget("must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("must name a host")
    if port == 0:
        raise UnsafeTarget("must not use port 0")
    resolved_port = port if port is not None else (443 if scheme == "https" else 80)

    literal: IPAddress | None = None
    if parts.netloc.split("@")[-1].startswith("["):
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise UnsafeTarget("has an invalid IPv6 literal") from None
    else:
        if not host.isascii():
            raise UnsafeTarget("host must be ASCII (use the punycode xn-- form)")
        labels = host.rstrip(".").split(".")
        if _NUMERIC_LABEL.match(labels[-1]):
            # WHATWG URL parsers read such hosts as IPv4; only the canonical dotted quad is allowed,
            # so integer, octal, hex and short forms (2130706433, 0177.0.0.1, 0x7f.1, 127.1) cannot
            # smuggle an address past the checks.
            if not _CANONICAL_IPV4.match(host.rstrip(".")):
                raise UnsafeTarget("uses a non-canonical IPv4 spelling (integer, octal, hex or short form)")
            literal = ipaddress.IPv4Address(host.rstrip("."))
        else:
            if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
                raise UnsafeTarget("has an invalid host name")
            if not allow_private and (labels[-1].lower() == "localhost" or host.lower() == "localhost"):
                raise UnsafeTarget("must not point to localhost")

    if literal is not None and not allow_private:
        reason = blocked_reason(literal)
        if reason:
            raise UnsafeTarget(f"points to a blocked address ({reason})")
    return TargetUrl(scheme=scheme, host=host, port=resolved_port, literal_address=literal, parts=parts)
