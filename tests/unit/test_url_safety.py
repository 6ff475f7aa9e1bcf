"""The SSRF rules of Relay: which target URLs and which addresses are refused, and why.

Written Given/When/Then: each test names the situation, the call, and what the sender (or the
delivery client) is told.
"""

from __future__ import annotations

import ipaddress

import pytest

from functions.domain.web.url_safety import BLOCKED_NETWORKS, UnsafeTarget, blocked_reason, parse_target_url

# ---------------------------------------------------------------------------------------------
# blocked_reason: the explicit block list
# ---------------------------------------------------------------------------------------------


def _edges() -> list[tuple[str, str]]:
    cases = []
    for cidr, _reason in BLOCKED_NETWORKS:
        network = ipaddress.ip_network(cidr)
        cases.append((str(network[0]), cidr))
        cases.append((str(network[-1]), cidr))
    return cases


@pytest.mark.parametrize(("address", "cidr"), _edges(), ids=[f"{a}-in-{c}" for a, c in _edges()])
def test_given_first_or_last_address_of_a_blocked_network_when_checked_then_it_is_refused(
    address: str, cidr: str
) -> None:
    # Given an address at an edge of a network on the block list
    ip = ipaddress.ip_address(address)
    # When the delivery client checks it
    reason = blocked_reason(ip)
    # Then it is refused with a reason
    assert reason, f"{address} (edge of {cidr}) must be blocked"


@pytest.mark.parametrize(
    ("address", "expected_reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private (RFC 1918)"),
        ("172.31.255.255", "private (RFC 1918)"),
        ("192.168.1.1", "private (RFC 1918)"),
        ("169.254.169.254", "link-local (includes the instance metadata service 169.254.169.254)"),
        ("100.64.0.1", "carrier-grade NAT (RFC 6598)"),
        ("0.0.0.0", "this-network"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fd00:ec2::254", "unique local (includes the instance metadata service fd00:ec2::254)"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
    ],
)
def test_given_a_well_known_internal_address_when_checked_then_the_reason_names_its_range(
    address: str, expected_reason: str
) -> None:
    # Given a well-known internal address / When checked
    reason = blocked_reason(ipaddress.ip_address(address))
    # Then the reason says which range it is in
    assert reason == expected_reason


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        # IPv4-mapped (::ffff:0:0/96)
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:7f00:1", "loopback"),
        # NAT64 well-known prefix 64:ff9b::/96
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::127.0.0.1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b::192.168.0.1", "private"),
        # 6to4 2002::/16 carries the IPv4 address in bits 16..47
        ("2002:7f00:1::", "loopback"),
        ("2002:a00:1::1", "private"),
        ("2002:c0a8:101::1", "private"),
        ("2002:a9fe:a9fe::", "link-local"),
        # IPv4-compatible (deprecated ::a.b.c.d)
        ("::127.0.0.1", "loopback"),
        ("::10.0.0.1", "private"),
    ],
)
def test_given_ipv6_embedding_a_private_ipv4_when_checked_then_the_inner_address_is_refused(
    address: str, inner: str
) -> None:
    # Given an IPv6 address that embeds an internal IPv4 address / When checked
    reason = blocked_reason(ipaddress.ip_address(address))
    # Then it is refused because of the embedded address
    assert reason is not None
    assert reason.startswith("IPv4 embedded in IPv6 is ")
    assert inner in reason


@pytest.mark.parametrize(
    "address",
    [
        # RFC 8215 local-use NAT64 prefix: the IPv4 part may sit at other bit offsets (RFC 6052), so
        # the last 32 bits (8.8.8.8 here) say nothing; the /48 holds 127.0.0.1 at the /48 offsets.
        "64:ff9b:1:7f00:0:100:808:808",
        "64:ff9b:1::8.8.8.8",
        # SIIT "IPv4-translated" form ::ffff:0:a.b.c.d sits outside global unicast 2000::/3
        "::ffff:0:7f00:1",
        "1fff::1",
        "4000::1",
    ],
)
def test_given_non_global_ipv6_outside_the_named_ranges_when_checked_then_it_is_refused(address: str) -> None:
    # Given an IPv6 address that is not global unicast / When checked / Then refused
    assert blocked_reason(ipaddress.ip_address(address)) is not None


def test_given_a_scoped_ipv6_address_when_checked_then_it_is_refused() -> None:
    # Given a link-local address with a zone id
    address = ipaddress.IPv6Address("fe80::1%eth0")
    # When checked / Then refused as scoped
    assert blocked_reason(address) == "scoped IPv6 address"


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "2a00:1450:4001:81c::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
        # Just outside blocked IPv4 ranges
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "11.0.0.0",
        "9.255.255.255",
        "223.255.255.255",
    ],
)
def test_given_a_public_address_when_checked_then_it_is_allowed(address: str) -> None:
    # Given a public address (also wrapped in IPv4-mapped, NAT64 or 6to4 form) / When checked
    # Then nothing blocks it
    assert blocked_reason(ipaddress.ip_address(address)) is None


# ---------------------------------------------------------------------------------------------
# parse_target_url: URL shape and literal addresses
# ---------------------------------------------------------------------------------------------


def _reason(url: str, allow_private: bool = False) -> str:
    with pytest.raises(UnsafeTarget) as info:
        parse_target_url(url, allow_private=allow_private)
    return str(info.value)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/file", "http or https"),
        ("example.com/hook", "http or https"),
        ("/relative/hook", "http or https"),
        ("//example.com/hook", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://example.com/", "http or https"),
        ("", "http or https"),
        ("http://user:pass@example.com/", "credentials"),
        ("https://token@example.com/", "credentials"),
        ("http://@example.com/", "credentials"),
        ("http://example.com\\@127.0.0.1/", "credentials"),
        ("http:///path", "must name a host"),
        ("http://:8080/", "must name a host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://example.com:abc/", "not a valid URL"),
        ("http://example.com:-1/", "not a valid URL"),
        ("http://example.com:0/", "port 0"),
        ("http://exa mple.com/", "whitespace or control characters"),
        ("http://example.com/a b", "whitespace or control characters"),
        ("http://example.com/\t", "whitespace or control characters"),
        ("http://example.com/\n", "whitespace or control characters"),
        (" http://example.com/", "whitespace or control characters"),
        ("http://example.com/\x00", "whitespace or control characters"),
        ("http://example.com/\x7f", "whitespace or control characters"),
        ("http://example.com/\u00a0", "whitespace or control characters"),
        ("http://localhost/", "localhost"),
        ("http://LOCALHOST:8080/", "localhost"),
        ("http://localhost./", "localhost"),
        ("http://api.localhost/", "localhost"),
        ("http://exämple.com/", "punycode"),
        ("http://ex%61mple.com/", "invalid host name"),
        ("http://-bad-.example.com/", "invalid host name"),
        ("http://[::1/", "not a valid URL"),
        ("http://[v1.fe]/", "invalid IPv6 literal"),
    ],
)
def test_given_a_malformed_target_url_when_parsed_then_the_reason_says_what_to_fix(url: str, fragment: str) -> None:
    # Given a target URL that breaks a shape rule / When parsed / Then the reason names the rule
    assert fragment in _reason(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://127.0.0.1./",
        "http://[::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[::]/",
    ],
)
def test_given_a_private_ip_literal_when_parsed_then_it_is_blocked(url: str) -> None:
    # Given a URL whose host is an internal IP literal / When parsed / Then it is a blocked address
    assert "blocked address" in _reason(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://0x7f.0.0.1/",
        "http://127.0.0.01/",
        "http://017700000001/",
        "http://1.2.3.4.5/",
        "http://example.123/",
        "http://example.0x1/",
        "http://8.8.8.08/",
    ],
)
def test_given_a_non_canonical_ipv4_spelling_when_parsed_then_it_is_refused_even_when_private_is_allowed(
    url: str,
) -> None:
    # Given an integer, octal, hex or short IPv4 spelling
    # When parsed (with and without private targets allowed)
    # Then it is refused, so no spelling can smuggle an address past the checks
    assert "non-canonical IPv4" in _reason(url)
    assert "non-canonical IPv4" in _reason(url, allow_private=True)


@pytest.mark.parametrize(
    ("url", "host", "port", "literal"),
    [
        ("https://example.com/hook?x=1", "example.com", 443, None),
        ("http://93.184.216.34:8080/", "93.184.216.34", 8080, "93.184.216.34"),
        (
            "http://[2606:2800:220:1:248:1893:25c8:1946]/",
            "2606:2800:220:1:248:1893:25c8:1946",
            80,
            "2606:2800:220:1:248:1893:25c8:1946",
        ),
        ("HTTPS://Example.COM/Path", "example.com", 443, None),
        ("https://xn--bcher-kva.example/", "xn--bcher-kva.example", 443, None),
        ("http://example.com:8080/a/b?c=d#frag", "example.com", 8080, None),
        ("http://localhost.example.com/", "localhost.example.com", 80, None),
    ],
)
def test_given_a_public_target_when_parsed_then_host_port_and_literal_are_returned(
    url: str, host: str, port: int, literal: str | None
) -> None:
    # Given a public http(s) URL / When parsed
    target = parse_target_url(url, allow_private=False)
    # Then host, effective port and literal address are reported
    assert target.host == host
    assert target.port == port
    assert target.literal_address == (ipaddress.ip_address(literal) if literal else None)


def test_given_a_url_with_query_and_fragment_when_parsed_then_the_fragment_never_leaves_the_relay() -> None:
    target = parse_target_url("https://example.com:8443/a/b?x=1#secret", allow_private=False)
    assert target.request_target == "/a/b?x=1"
    assert target.host_header == "example.com:8443"
    assert parse_target_url("http://example.com", allow_private=False).request_target == "/"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/", "http://localhost:8080/hook", "http://[::1]:9000/", "http://10.0.0.5/"]
)
def test_given_private_targets_allowed_when_parsing_a_private_target_then_it_passes(url: str) -> None:
    # Given local development allows private targets / When parsed / Then the URL is accepted
    assert parse_target_url(url, allow_private=True).port in (80, 8080, 9000)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("http://user:pass@127.0.0.1/", "credentials"), ("ftp://127.0.0.1/", "http or https")],
)
def test_given_private_targets_allowed_when_the_url_breaks_a_shape_rule_then_it_is_still_refused(
    url: str, fragment: str
) -> None:
    assert fragment in _reason(url, allow_private=True)
