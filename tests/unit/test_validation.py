"""Every rule of the message contract, with the bad inputs a sender may send and what they are told.

Written Given/When/Then. Each rejection is checked the way a sender sees it: the exception type
(which `responses.response_for_rejection` turns into 400, 403 or 413) and each detail's JSON path
(`$.targetUrl`, `$.headers['X-Trace']`) and message. Limits come from `Settings` built directly, so
the tests do not depend on the environment.
"""

from __future__ import annotations

import base64
import json
import re
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.domain.config import Settings
from functions.domain.exceptions import (
    FieldError,
    MalformedRequest,
    MessageInvalid,
    PayloadTooLarge,
    RelayError,
    SenderMismatch,
)
from functions.domain.validation import (
    RESERVED_HEADER_PREFIX,
    RESERVED_HEADERS,
    ValidMessage,
    content_hash,
    decode_request_body,
    validate_message,
)
from functions.services.http_api.responses import response_for_rejection
from tests.support import validation_settings

NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
SETTINGS: Settings = validation_settings()
MISSING: Any = object()
REQUIRED = ("messageId", "senderId", "timestamp", "targetUrl")


def message(**overrides: Any) -> dict[str, Any]:
    """A valid message; keyword arguments replace fields, MISSING removes one."""
    document: dict[str, Any] = {
        "messageId": "order-1042.created:v1",
        "senderId": "acme_shop-01",
        "timestamp": "2026-01-31T11:59:00Z",
        "targetUrl": "https://example.com/hook",
    }
    document.update(overrides)
    return {key: value for key, value in document.items() if value is not MISSING}


def accept(document: Any, config: Settings = SETTINGS, **kwargs: Any) -> ValidMessage:
    return validate_message(document, config, now=NOW, **kwargs)


def reject(document: Any, config: Settings = SETTINGS, **kwargs: Any) -> MessageInvalid:
    with pytest.raises(MessageInvalid) as info:
        validate_message(document, config, now=NOW, **kwargs)
    assert info.value.details, "a rejection must name at least one field"
    return info.value


def only_detail(error: MessageInvalid) -> FieldError:
    assert len(error.details) == 1, error.details
    return error.details[0]


def messages_at(error: MessageInvalid, path: str) -> list[str]:
    return [detail.message for detail in error.details if detail.path == path]


def header_path(name: str) -> str:
    """The JSON path of a header in jsonschema's notation: dotted for plain names, else bracketed."""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        return f"$.headers.{name}"
    return "$.headers['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def status_of(error: RelayError) -> int:
    return int(response_for_rejection(error, "req-1")["statusCode"])


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# =============================================================================================
# The envelope: required fields, unknown fields, non-object JSON
# =============================================================================================


def test_given_a_minimal_valid_message_when_validated_then_it_is_normalised_with_method_post() -> None:
    # Given the four required fields only
    document = message()
    # When validated
    valid = accept(document)
    # Then it is accepted, method defaults to POST and no headers/body appear
    assert valid.message == {**document, "method": "POST"}
    assert valid.message_id == "order-1042.created:v1"
    assert valid.sender_id == "acme_shop-01"
    assert re.fullmatch(r"[0-9a-f]{64}", valid.content_hash)


@pytest.mark.parametrize("field", REQUIRED)
def test_given_a_required_field_missing_when_validated_then_the_detail_names_it(field: str) -> None:
    # Given a message without one required field
    document = message(**{field: MISSING})
    # When validated
    error = reject(document)
    # Then exactly one detail names it, at $.<field>, and the answer is a 400
    assert error.details == [FieldError(f"$.{field}", f"'{field}' is required")]
    assert status_of(error) == 400


def test_given_an_empty_object_when_validated_then_each_required_field_is_named_once() -> None:
    # Given {} / When validated
    error = reject({})
    # Then every required field is reported, each exactly once, in schema order
    assert [detail.path for detail in error.details] == [f"$.{field}" for field in REQUIRED]


def test_given_several_problems_when_validated_then_all_are_reported_in_one_answer() -> None:
    # Given a message with a bad id, a missing sender, a bad timestamp, a bad URL, a bad method,
    # a reserved header and an unknown field
    document = message(
        messageId="has space",
        senderId=MISSING,
        timestamp="yesterday",
        targetUrl="ftp://example.com/",
        method="FETCH",
        headers={"Host": "evil.example"},
        priority="high",
    )
    # When validated
    error = reject(document)
    # Then each problem has its own detail
    paths = {detail.path for detail in error.details}
    assert paths >= {
        "$.messageId",
        "$.senderId",
        "$.timestamp",
        "$.targetUrl",
        "$.method",
        "$.headers.Host",
        "$.priority",
    }
    assert len(error.details) == len(set(error.details)), "no detail is repeated"


@pytest.mark.parametrize(
    ("name", "path"),
    [("priority", "$.priority"), ("message_id", "$.message_id"), ("x y", "$['x y']"), ("a.b", "$['a.b']")],
)
def test_given_an_unknown_field_when_validated_then_it_is_named_as_not_known(name: str, path: str) -> None:
    # Given an otherwise valid message with an extra field
    error = reject(message(**{name: "value"}))
    # Then the extra field is named
    assert error.details == [FieldError(path, f"'{name}' is not a known field")]


def test_given_thousands_of_unknown_fields_when_validated_then_the_answer_stays_small() -> None:
    # Given a message with 5,000 unknown fields (fits in the request size limit)
    document = message(**{f"f{i}": 0 for i in range(5000)})
    # When validated
    error = reject(document)
    # Then 50 details at most are returned, the last one counting the rest
    assert len(error.details) == 50
    assert error.details[-1] == FieldError("$", "and 4951 more problems")
    assert len(response_for_rejection(error, "req-1")["body"]) < 10_000


def test_given_a_huge_unknown_field_name_when_validated_then_the_detail_is_cut_short() -> None:
    error = reject(message(**{"x" * 100_000: 1}))
    detail = only_detail(error)
    assert detail.path.startswith("$.xxx")
    assert len(detail.path) <= 303 and detail.path.endswith("...")
    assert len(detail.message) <= 303


@pytest.mark.parametrize(
    "document",
    [[], [message()], "a string", "", 42, 3.5, True, None],
    ids=["empty-array", "array-of-message", "string", "empty-string", "int", "float", "bool", "null"],
)
def test_given_json_that_is_not_an_object_when_validated_then_the_whole_message_is_rejected(
    document: Any,
) -> None:
    # Given a JSON value that is not an object / When validated
    error = reject(document)
    # Then the detail points at the root
    assert error.details == [FieldError("$", "the message must be a JSON object")]
    assert status_of(error) == 400


# =============================================================================================
# messageId and senderId: alphabet [A-Za-z0-9._:-], 1..128 characters
# =============================================================================================

IDENTIFIERS = ("messageId", "senderId")


@pytest.mark.parametrize("field", IDENTIFIERS)
@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("a" * 129, "is 129 characters long; the limit is 128"),
        ("has space", "letters, digits"),
        (" leading", "letters, digits"),
        ("hash#tag", "letters, digits"),
        ("path/like", "letters, digits"),
        ("question?", "letters, digits"),
        ("percent%20", "letters, digits"),
        ("plus+sign", "letters, digits"),
        ("caf\u00e9", "letters, digits"),
        ("\u0661\u0662", "letters, digits"),  # Arabic-Indic digits are not [0-9]
        ("emoji-\U0001f642", "letters, digits"),
        ("tab\tinside", "letters, digits"),
        ("trailing-newline\n", "letters, digits"),  # Python's `$` would let this through
        ("nul\x00", "letters, digits"),
    ],
    ids=lambda v: repr(v)[:24],
)
def test_given_a_bad_identifier_when_validated_then_the_detail_names_the_field(
    field: str, value: str, fragment: str
) -> None:
    # Given a messageId/senderId outside the alphabet or length
    error = reject(message(**{field: value}))
    # Then the detail is at $.<field> and says what is wrong
    detail = only_detail(error)
    assert detail.path == f"$.{field}"
    assert fragment in detail.message


@pytest.mark.parametrize("field", IDENTIFIERS)
@pytest.mark.parametrize("value", [123, None, ["a"], {"id": "a"}, True])
def test_given_a_non_string_identifier_when_validated_then_its_type_is_named(field: str, value: Any) -> None:
    detail = only_detail(reject(message(**{field: value})))
    assert detail.path == f"$.{field}"
    assert "is not of type 'string'" in detail.message


@pytest.mark.parametrize("field", IDENTIFIERS)
@pytest.mark.parametrize("value", ["a", "a" * 128, "A-z_0.9:x", "urn:uuid:123e4567-e89b-12d3-a456-426614174000"])
def test_given_an_identifier_within_the_rules_when_validated_then_it_is_kept(field: str, value: str) -> None:
    assert accept(message(**{field: value})).message[field] == value


# =============================================================================================
# timestamp: RFC 3339 with a time zone, not too far in the future, not older than the TTL
# =============================================================================================


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2026-01-31",
        "12:00:00Z",
        "2026-01-31 11:59:00Z",
        "2026/01/31T11:59:00Z",
        "20260131T115900Z",
        "2026-01-31T11:59Z",
        "2026-01-31T11:59:00,5Z",
        "2026-02-30T11:59:00Z",
        "2026-01-31T24:00:00Z",
        "2026-01-31T11:59:00+0200",
        "2026-01-31T11:59:00+02",
        "2026-01-31T11:59:00+24:00",
        "2026-01-31T11:59:00Z\n",
        "\uff12\uff10\uff12\uff16-01-31T11:59:00Z",  # full-width digits
        "1769860740",
    ],
)
def test_given_a_timestamp_that_is_not_rfc3339_when_validated_then_the_format_is_explained(
    value: str,
) -> None:
    detail = only_detail(reject(message(timestamp=value)))
    assert detail.path == "$.timestamp"
    assert "RFC 3339" in detail.message


@pytest.mark.parametrize("value", ["2026-01-31T11:59:00", "2026-01-31T11:59:00.123"])
def test_given_a_timestamp_without_time_zone_when_validated_then_the_time_zone_is_asked_for(
    value: str,
) -> None:
    detail = only_detail(reject(message(timestamp=value)))
    assert detail.path == "$.timestamp"
    assert "time zone" in detail.message


@pytest.mark.parametrize("value", [1769860740, None, ["2026-01-31T11:59:00Z"]])
def test_given_a_timestamp_that_is_not_a_string_when_validated_then_its_type_is_named(value: Any) -> None:
    detail = only_detail(reject(message(timestamp=value)))
    assert detail.path == "$.timestamp"
    assert "is not of type 'string'" in detail.message


def test_given_a_timestamp_beyond_the_future_skew_when_validated_then_the_limit_is_named() -> None:
    # Given a timestamp 301 s ahead of the relay's clock (limit 300 s)
    stamp = (NOW + timedelta(seconds=301)).isoformat().replace("+00:00", "Z")
    # When validated / Then it is rejected naming the limit
    detail = only_detail(reject(message(timestamp=stamp)))
    assert detail == FieldError("$.timestamp", "is more than 300 seconds in the future")


def test_given_a_timestamp_exactly_at_the_future_skew_when_validated_then_it_passes() -> None:
    stamp = (NOW + timedelta(seconds=300)).isoformat()
    assert accept(message(timestamp=stamp)).message["timestamp"] == stamp


def test_given_a_tighter_future_skew_setting_when_validated_then_it_applies() -> None:
    # Given max_future_skew_seconds = 10
    config = replace(SETTINGS, max_future_skew_seconds=10)
    ahead = (NOW + timedelta(seconds=11)).isoformat()
    # When a timestamp 11 s ahead is validated / Then the configured limit is named
    assert only_detail(reject(message(timestamp=ahead), config)).message == "is more than 10 seconds in the future"
    assert accept(message(timestamp=(NOW + timedelta(seconds=10)).isoformat()), config)


def test_given_a_timestamp_older_than_the_ttl_when_validated_then_the_retention_is_named() -> None:
    # Given a timestamp 30 days and 1 s old (TTL 30 days)
    stamp = (NOW - timedelta(days=30, seconds=1)).isoformat()
    # When validated / Then it is rejected naming the retention
    assert only_detail(reject(message(timestamp=stamp))) == FieldError(
        "$.timestamp", "is older than the retention of 30 days"
    )
    assert accept(message(timestamp=(NOW - timedelta(days=30)).isoformat()))


def test_given_a_shorter_ttl_setting_when_an_old_timestamp_is_validated_then_the_setting_applies() -> None:
    config = replace(SETTINGS, ttl_days=1)
    stamp = (NOW - timedelta(days=1, minutes=1)).isoformat()
    assert only_detail(reject(message(timestamp=stamp), config)).message == "is older than the retention of 1 days"


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-31T11:59:00Z",
        "2026-01-31T13:59:00+02:00",  # same instant as 11:59Z
        "2026-01-31T06:59:00-05:00",
        "2026-01-31T11:59:00-00:00",
        "2026-01-31t11:59:00z",  # RFC 3339 allows lower case t and z
        "2026-01-31T11:59:00.123456Z",
        "2026-01-31T11:59:00.1Z",
    ],
)
def test_given_a_valid_rfc3339_timestamp_when_validated_then_it_is_kept_verbatim(value: str) -> None:
    assert accept(message(timestamp=value)).message["timestamp"] == value


# =============================================================================================
# targetUrl: absolute http(s), no credentials, no private or odd IP literals, <= 2048 chars
# =============================================================================================


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://example.com/file", "http or https"),
        ("example.com/hook", "http or https"),
        ("/relative/hook", "http or https"),
        ("../hook", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("", "http or https"),
        ("http://user:pass@example.com/", "credentials"),
        ("https://token@example.com/hook", "credentials"),
        ("http:///path", "must name a host"),
        ("http://:8080/", "must name a host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://example.com:abc/", "not a valid URL"),
        ("http://example.com:0/", "port 0"),
        ("http://exa mple.com/", "whitespace or control characters"),
        ("http://example.com/a b", "whitespace or control characters"),
        ("http://example.com/\t", "whitespace or control characters"),
        ("http://example.com/\r\nX-Injected: 1", "whitespace or control characters"),
        ("https://example.com/\n", "whitespace or control characters"),
        ("http://example.com/\x00", "whitespace or control characters"),
        ("http://localhost/", "localhost"),
        ("http://LOCALHOST:8080/hook", "localhost"),
        ("http://api.localhost/", "localhost"),
        ("https://b\u00fccher.example/", "punycode"),
        ("http://127.0.0.1/", "blocked address (loopback)"),
        ("http://10.0.0.1/", "blocked address (private (RFC 1918))"),
        ("http://172.16.0.1/", "blocked address (private (RFC 1918))"),
        ("http://192.168.1.1/", "blocked address (private (RFC 1918))"),
        ("http://169.254.169.254/latest/meta-data/", "instance metadata service"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "this-network"),
        ("http://[::1]/", "blocked address (loopback)"),
        ("http://[fd00:ec2::254]/", "instance metadata service fd00:ec2::254"),
        ("http://[fe80::1]/", "blocked address (link-local)"),
        ("http://[::ffff:127.0.0.1]/", "IPv4 embedded in IPv6 is loopback"),
        ("http://[64:ff9b::7f00:1]/", "IPv4 embedded in IPv6 is loopback"),
        ("http://2130706433/", "non-canonical IPv4"),
        ("http://0x7f000001/", "non-canonical IPv4"),
        ("http://0177.0.0.1/", "non-canonical IPv4"),
        ("http://127.1/", "non-canonical IPv4"),
        ("http://0x7f.1/", "non-canonical IPv4"),
    ],
)
def test_given_a_bad_target_url_when_validated_then_one_detail_says_what_to_fix(url: str, fragment: str) -> None:
    # Given a message whose targetUrl breaks a rule
    error = reject(message(targetUrl=url))
    # When validated / Then exactly one detail, at $.targetUrl, names the rule broken
    detail = only_detail(error)
    assert detail.path == "$.targetUrl"
    assert fragment in detail.message, detail.message
    assert status_of(error) == 400


def test_given_a_target_url_over_2048_characters_when_validated_then_the_limit_is_named() -> None:
    url = "https://example.com/" + "a" * (2049 - len("https://example.com/"))
    assert only_detail(reject(message(targetUrl=url))) == FieldError(
        "$.targetUrl", "is 2049 characters long; the limit is 2048"
    )
    assert accept(message(targetUrl=url[:-1]))


@pytest.mark.parametrize(
    "url", ["https://example.com/caf\u00e9", "https://example.com/a\\b", "https://example.com/{x}"]
)
def test_given_a_target_url_that_is_not_an_rfc3986_uri_when_validated_then_encoding_is_suggested(
    url: str,
) -> None:
    detail = only_detail(reject(message(targetUrl=url)))
    assert detail.path == "$.targetUrl"
    assert "RFC 3986" in detail.message


@pytest.mark.parametrize("value", [42, None, ["https://example.com/"], {"url": "https://example.com/"}])
def test_given_a_target_url_that_is_not_a_string_when_validated_then_its_type_is_named(value: Any) -> None:
    detail = only_detail(reject(message(targetUrl=value)))
    assert detail.path == "$.targetUrl"
    assert "is not of type 'string'" in detail.message


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook?x=1",
        "http://93.184.216.34:8080/",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/",
        "HTTPS://Example.COM/Path",
        "https://xn--bcher-kva.example/",
        "https://example.com:8443/a/b?c=d&e=%20f#frag",
    ],
)
def test_given_a_public_target_url_when_validated_then_it_is_kept_verbatim(url: str) -> None:
    assert accept(message(targetUrl=url)).message["targetUrl"] == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/", "http://localhost:8080/hook", "http://[::1]:9000/"])
def test_given_private_targets_allowed_when_a_local_target_is_validated_then_it_passes(url: str) -> None:
    # Given local development with allow_private_targets=True
    config = replace(SETTINGS, allow_private_targets=True)
    # When a private target is validated / Then it is accepted
    assert accept(message(targetUrl=url), config).message["targetUrl"] == url
    # ...and the same message is refused without that setting
    assert only_detail(reject(message(targetUrl=url))).path == "$.targetUrl"


def test_given_private_targets_allowed_when_an_integer_ip_spelling_is_validated_then_it_is_refused() -> None:
    config = replace(SETTINGS, allow_private_targets=True)
    assert "non-canonical IPv4" in only_detail(reject(message(targetUrl="http://2130706433/"), config)).message


# =============================================================================================
# method: enum, default POST, no body with GET/HEAD
# =============================================================================================


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_given_a_method_that_takes_a_body_when_validated_then_it_is_kept(method: str) -> None:
    valid = accept(message(method=method, body="x"))
    assert valid.message["method"] == method
    assert valid.message["body"] == "x"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_given_get_or_head_without_a_body_when_validated_then_it_passes(method: str) -> None:
    assert accept(message(method=method)).message["method"] == method


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("body", ["x", "", {"a": 1}, []])
def test_given_get_or_head_with_a_body_when_validated_then_the_body_is_refused(method: str, body: Any) -> None:
    # Given a GET/HEAD message that carries a body / When validated
    detail = only_detail(reject(message(method=method, body=body)))
    # Then the body is named, with the reason
    assert detail == FieldError("$.body", f"must be absent when method is {method}")


@pytest.mark.parametrize("method", ["get", "Post", "OPTIONS", "CONNECT", "TRACE", "FETCH", "", "GET\n", 1, None])
def test_given_a_method_outside_the_enum_when_validated_then_the_allowed_methods_are_listed(
    method: Any,
) -> None:
    error = reject(message(method=method))
    assert {detail.path for detail in error.details} == {"$.method"}
    assert any(
        "is not one of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']" in detail.message for detail in error.details
    )


# =============================================================================================
# headers: names, values, reserved names, duplicates, count and size limits
# =============================================================================================


def test_given_ordinary_headers_when_validated_then_they_are_kept_as_given() -> None:
    headers = {"X-Trace": "abc\tdef", "Authorization": "Bearer t0k3n", "Accept": "*/*", "X-Empty": ""}
    assert accept(message(headers=headers)).message["headers"] == headers


@pytest.mark.parametrize(
    "name",
    ["X Custom", "X:Custom", "", "X-A\n", "X(A)", '"quoted"', "X,Y", "X/Y", "Ünïcode", "X@Y", "a" * 257],
)
def test_given_an_invalid_header_name_when_validated_then_the_header_is_named(name: str) -> None:
    # Given a header whose name is not an HTTP token / When validated
    error = reject(message(headers={name: "v"}))
    # Then the detail points at that header and says the name is invalid
    assert only_detail(error) == FieldError(header_path(name), "is not a valid HTTP header name")


@pytest.mark.parametrize(
    "value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "trailing\n", "\r\n", "\n"], ids=repr
)
def test_given_a_header_value_with_cr_lf_or_nul_when_validated_then_header_injection_is_refused(
    value: str,
) -> None:
    # Given a header value that would split the request / When validated
    error = reject(message(headers={"X-Trace": value}))
    # Then exactly one detail at the header names CR, LF and NUL
    assert only_detail(error) == FieldError("$.headers['X-Trace']", "header values must not contain CR, LF or NUL")


@pytest.mark.parametrize("value", ["\x01", "esc\x1b[31m", "del\x7f", "line\u2028sep", "bell\x07"], ids=repr)
def test_given_a_header_value_with_other_control_characters_when_validated_then_it_is_refused(
    value: str,
) -> None:
    error = reject(message(headers={"X-Trace": value}))
    assert only_detail(error) == FieldError("$.headers['X-Trace']", "header values must be printable text")


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "host",
        "HOST",
        "Content-Length",
        "content-length",
        "Connection",
        "Transfer-Encoding",
        "transfer-encoding",
        "Upgrade",
        "Keep-Alive",
        "TE",
        "te",
        "Trailer",
        "Proxy-Authorization",
        "Proxy-Connection",
        "webhook-id",
        "Webhook-Signature",
        "WEBHOOK-TIMESTAMP",
        "webhook-anything",
    ],
)
def test_given_a_reserved_header_when_validated_then_it_is_refused_whatever_its_case(name: str) -> None:
    # Given a header the relay sets itself / When validated
    detail = only_detail(reject(message(headers={name: "value"})))
    # Then that header is named and the reason says it is the relay's
    assert detail.path == header_path(name)
    assert "set by the relay" in detail.message or "reserved for the relay" in detail.message


def test_given_headers_differing_only_by_case_when_validated_then_the_duplicate_is_named() -> None:
    detail = only_detail(reject(message(headers={"X-Trace": "1", "x-trace": "2"})))
    assert detail == FieldError("$.headers['x-trace']", "duplicates header 'X-Trace' (names are case-insensitive)")


def test_given_more_headers_than_the_configured_count_when_validated_then_the_limit_is_named() -> None:
    # Given max_header_count = 3
    config = replace(SETTINGS, max_header_count=3)
    headers = {f"X-H{i}": "v" for i in range(4)}
    # When 4 headers are sent / Then the count and the limit are named; 3 pass
    assert only_detail(reject(message(headers=headers), config)) == FieldError(
        "$.headers", "has 4 headers; the limit is 3"
    )
    assert accept(message(headers=dict(list(headers.items())[:3])), config)


def test_given_more_headers_than_the_default_count_when_validated_then_it_is_refused() -> None:
    headers = {f"X-H{i}": "v" for i in range(SETTINGS.max_header_count + 1)}
    assert messages_at(reject(message(headers=headers)), "$.headers") == ["has 33 headers; the limit is 32"]


def test_given_headers_over_the_total_byte_limit_when_validated_then_the_size_is_named() -> None:
    # Given max_header_bytes = 100; a header costs len(name) + len(value) + 4 (": " and CRLF)
    config = replace(SETTINGS, max_header_bytes=100)
    # When exactly at the limit / Then accepted
    assert accept(message(headers={"X-A": "v" * 93}), config)
    # When one byte over / Then refused with the total and the limit
    assert only_detail(reject(message(headers={"X-A": "v" * 94}), config)) == FieldError(
        "$.headers", "are 101 bytes in all; the limit is 100"
    )


def test_given_multibyte_header_values_when_sized_then_utf8_bytes_are_counted() -> None:
    config = replace(SETTINGS, max_header_bytes=100)
    # 47 x "é" is 47 characters but 94 bytes: 3 + 94 + 4 = 101 > 100
    assert only_detail(reject(message(headers={"X-A": "\u00e9" * 47}), config)).path == "$.headers"


@pytest.mark.parametrize("value", [1, 1.5, True, None, ["a"], {"a": "b"}])
def test_given_a_header_value_that_is_not_a_string_when_validated_then_its_type_is_named(value: Any) -> None:
    detail = only_detail(reject(message(headers={"X-Count": value})))
    assert detail.path == "$.headers['X-Count']"
    assert "is not of type 'string'" in detail.message


@pytest.mark.parametrize("headers", [[], ["X-A: 1"], "X-A: 1", 5, None])
def test_given_headers_that_are_not_an_object_when_validated_then_its_type_is_named(headers: Any) -> None:
    detail = only_detail(reject(message(headers=headers)))
    assert detail.path == "$.headers"
    assert "is not of type 'object'" in detail.message


# =============================================================================================
# body: strings byte-exact, JSON serialised once, size in UTF-8 bytes, types
# =============================================================================================


@pytest.mark.parametrize(
    "body",
    ['{"b": 1,  "a": [1, 2]}\n', "", "plain text \u2713 caf\u00e9", "line1\r\nline2", "  \t ", '"quoted"'],
    ids=repr,
)
def test_given_a_string_body_when_validated_then_it_is_kept_byte_exact_without_content_type(
    body: str,
) -> None:
    valid = accept(message(body=body))
    assert valid.message["body"] == body
    assert "headers" not in valid.message


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"b": 1, "a": "\u00e9\u2713"}, '{"b":1,"a":"\u00e9\u2713"}'),
        ([1, 2, {"x": None}], '[1,2,{"x":null}]'),
        ({}, "{}"),
        ([], "[]"),
        ({"nested": {"deep": [True, False, 1.5]}}, '{"nested":{"deep":[true,false,1.5]}}'),
    ],
)
def test_given_a_json_body_when_validated_then_it_is_serialised_compactly_once_with_json_content_type(
    body: Any, text: str
) -> None:
    # Given an object or array body / When validated
    valid = accept(message(body=body))
    # Then it becomes compact text, non-ASCII unescaped, key order kept, and Content-Type is JSON
    assert valid.message["body"] == text
    assert valid.message["headers"] == {"Content-Type": "application/json"}


@pytest.mark.parametrize("name", ["Content-Type", "content-type", "CONTENT-TYPE"])
def test_given_a_json_body_and_a_content_type_when_validated_then_the_senders_content_type_is_kept(
    name: str,
) -> None:
    valid = accept(message(body={"a": 1}, headers={name: "application/vnd.api+json"}))
    assert valid.message["headers"] == {name: "application/vnd.api+json"}


def test_given_a_normalised_message_when_validated_again_then_body_and_hash_are_unchanged() -> None:
    # Given a message whose JSON body was serialised once
    first = accept(message(body={"z": [1, 2], "a": "\u00e9"}, headers={"X-Trace": "t"}))
    # When the normalised message is validated again (as a stored message would be)
    second = accept(first.message)
    # Then nothing changes: the body is byte-exact from the first serialisation on
    assert second.message == first.message
    assert second.content_hash == first.content_hash


def test_given_a_body_over_the_limit_when_validated_then_payload_too_large_names_the_body() -> None:
    # Given max_body_bytes = 10
    config = replace(SETTINGS, max_body_bytes=10)
    # When an 11-byte body is sent
    with pytest.raises(PayloadTooLarge) as info:
        accept(message(body="a" * 11), config)
    # Then the answer is a 413 naming $.body, its size and the limit
    assert info.value.path == "$.body"
    assert str(info.value) == "The body is 11 bytes; the limit is 10."
    assert status_of(info.value) == 413
    # ...and exactly 10 bytes pass
    assert accept(message(body="a" * 10), config)


@pytest.mark.parametrize(
    ("body", "size"),
    [("\u00e9" * 6, 12), ("\U0001f642" * 3, 12), ("\u2713" * 4, 12), ({"k": "\u00e9\u00e9\u00e9"}, 14)],
    ids=["2-byte", "4-byte", "3-byte", "json-object"],
)
def test_given_a_multibyte_body_when_sized_then_utf8_bytes_are_counted_not_characters(body: Any, size: int) -> None:
    config = replace(SETTINGS, max_body_bytes=10)
    with pytest.raises(PayloadTooLarge) as info:
        accept(message(body=body), config)
    assert str(info.value) == f"The body is {size} bytes; the limit is 10."
    assert accept(message(body="\u00e9" * 5), config)  # 10 bytes


def test_given_a_body_over_the_limit_and_other_problems_when_validated_then_all_are_reported_together() -> None:
    config = replace(SETTINGS, max_body_bytes=10)
    error = reject(message(body="a" * 11, method="FETCH"), config)
    assert {detail.path for detail in error.details} == {"$.method", "$.body"}
    assert messages_at(error, "$.body") == ["The body is 11 bytes; the limit is 10."]


@pytest.mark.parametrize("body", [5, 0, 1.5, True, False, None])
def test_given_a_body_of_the_wrong_type_when_validated_then_the_allowed_types_are_named(body: Any) -> None:
    detail = only_detail(reject(message(body=body)))
    assert detail.path == "$.body"
    assert "is not of type 'string', 'object', 'array'" in detail.message


@pytest.mark.parametrize("body", [{"a": float("nan")}, [float("inf")], {"a": [float("-inf")]}])
def test_given_a_json_body_with_nan_or_infinity_when_validated_then_it_is_refused(body: Any) -> None:
    detail = only_detail(reject(message(body=body)))
    assert detail.path == "$.body"
    assert "NaN" in detail.message


@pytest.mark.parametrize("body", ["\ud800", "ok \udfff", {"a": "\udc00"}], ids=repr)
def test_given_a_body_with_a_lone_surrogate_when_validated_then_it_is_refused_not_crashing(body: Any) -> None:
    # JSON allows the escape "\ud800", which has no UTF-8 form: it must be a 400, not a 500.
    detail = only_detail(reject(message(body=body)))
    assert detail.path == "$.body"
    assert "Unicode" in detail.message


def test_given_a_header_name_with_a_lone_surrogate_when_rejected_then_the_answer_can_be_encoded() -> None:
    error = reject(message(headers={"X-\ud800": "v"}, **{"\udc00": 1}))
    body = response_for_rejection(error, "req-1")["body"]
    body.encode("utf-8")  # must not raise
    assert "\\\\ud800" in body


# =============================================================================================
# decode_request_body: the raw request before it is a message
# =============================================================================================


def test_given_a_base64_json_object_when_decoded_then_the_value_is_returned() -> None:
    raw = json.dumps(message(body="caf\u00e9"), ensure_ascii=False).encode("utf-8")
    assert decode_request_body(b64(raw), SETTINGS) == message(body="caf\u00e9")


@pytest.mark.parametrize("body", [None, ""])
def test_given_an_empty_request_when_decoded_then_malformed_request_asks_for_a_json_object(body: Any) -> None:
    with pytest.raises(MalformedRequest, match="empty"):
        decode_request_body(body, SETTINGS)


@pytest.mark.parametrize("body", ["not base64!!", "abc", "====", "{}"])
def test_given_a_body_that_is_not_base64_when_decoded_then_malformed_request(body: str) -> None:
    with pytest.raises(MalformedRequest, match="could not be decoded"):
        decode_request_body(body, SETTINGS)


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00", b'{"a": "\xc3"}', b"\xed\xa0\x80"])
def test_given_invalid_utf8_when_decoded_then_malformed_request_says_utf8(raw: bytes) -> None:
    with pytest.raises(MalformedRequest, match="UTF-8"):
        decode_request_body(b64(raw), SETTINGS)


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        (b'{"messageId": }', 14),
        (b'{"a": 1,}', 8),
        (b'{"a": 1}{', 8),
        (b"{'a': 1}", 1),
        (b"[", 1),
        (b"   ", 3),
        (b'\xef\xbb\xbf{"a": 1}', 0),
    ],
)
def test_given_malformed_json_when_decoded_then_the_message_names_the_position(raw: bytes, position: int) -> None:
    with pytest.raises(MalformedRequest) as info:
        decode_request_body(b64(raw), SETTINGS)
    assert str(info.value).startswith("The request body is not valid JSON: ")
    assert f"at position {position}." in str(info.value)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"[" * 100_000, "$[0]"),
        (b'{"a":' * 100_000, "$.a"),
        (b"[" * 100_000 + b"]" * 100_000, "$[0]"),
        (b'{"body":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "$.body"),
    ],
)
def test_given_deeply_nested_json_when_decoded_then_a_400_names_the_field_not_recursion_error(
    raw: bytes, path: str
) -> None:
    config = replace(SETTINGS, max_body_bytes=1_000_000)  # the nesting, not the size, is under test
    with pytest.raises(MessageInvalid) as refused:
        decode_request_body(b64(raw), config)
    assert refused.value.details == [FieldError(path, "is nested deeper than 64 levels")]


def nested(levels: int, kind: str = "array") -> Any:
    """A JSON value `levels` arrays (or objects) deep: [[...]] or {"a": {"a": ...}}."""
    value: Any = [] if kind == "array" else {}
    for _ in range(levels - 1):
        value = [value] if kind == "array" else {"a": value}
    return value


@pytest.mark.parametrize("kind", ["array", "object"])
def test_given_a_json_body_nested_64_levels_when_validated_then_it_is_accepted_as_sent(kind: str) -> None:
    # Given a message whose JSON body nests 64 levels of arrays (or objects), the documented limit
    body = nested(64, kind)
    raw = json.dumps(message(body=body)).encode()
    # When the request is decoded and validated
    valid = validate_message(decode_request_body(b64(raw), SETTINGS), SETTINGS, now=NOW)
    # Then it is accepted, and delivered as that JSON
    assert json.loads(valid.message["body"]) == body


@pytest.mark.parametrize("kind", ["array", "object"])
def test_given_a_json_body_nested_65_levels_when_decoded_then_a_400_names_the_body(kind: str) -> None:
    # Given a message whose JSON body nests one level more than the limit
    raw = json.dumps(message(body=nested(65, kind))).encode()
    # When the request is decoded
    with pytest.raises(MessageInvalid) as refused:
        decode_request_body(b64(raw), SETTINGS)
    # Then it is a validation error (400 VALIDATION_ERROR) naming the body and the limit
    assert refused.value.details == [FieldError("$.body", "is nested deeper than 64 levels")]
    answer = response_for_rejection(refused.value, "req-1")
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["error"]["code"] == "VALIDATION_ERROR"


def test_given_brackets_inside_strings_when_decoded_then_they_are_not_nesting() -> None:
    # Given a body that is a string of 1,000 brackets, and a header value of brackets
    document = message(body="[{" * 1_000, headers={"X-Brackets": "]" * 100 + "[" * 100})
    # When the request is decoded
    # Then it is the value sent: text is not structure
    assert decode_request_body(b64(json.dumps(document).encode()), SETTINGS) == document


def test_the_nesting_limit_is_documented_where_senders_read_the_contract() -> None:
    from functions.domain.config import message_schema
    from functions.domain.web.json_text import MAX_NESTING_DEPTH, NESTING_MESSAGE

    # Given the limit the code enforces
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    # Then the README's field table and the message schema's body (so the OpenAPI document) state it
    assert f"JSON nested at most {MAX_NESTING_DEPTH} levels deep" in readme
    assert f'"message": "{NESTING_MESSAGE}"' in readme
    assert f"at most {MAX_NESTING_DEPTH} levels deep" in message_schema()["properties"]["body"]["description"]


def test_given_another_field_nested_too_deep_when_decoded_then_that_field_is_named() -> None:
    # Given a request whose unknown field (quoted name) nests 100 levels, its body being fine
    document = {**message(body=nested(3)), "odd name": nested(100)}
    # When it is decoded
    with pytest.raises(MessageInvalid) as refused:
        decode_request_body(b64(json.dumps(document).encode()), SETTINGS)
    # Then the field is named, as the schema's errors name it
    assert refused.value.details == [FieldError("$['odd name']", "is nested deeper than 64 levels")]


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b"[Infinity]", b'{"a": -Infinity}'])
def test_given_nan_or_infinity_when_decoded_then_malformed_request(raw: bytes) -> None:
    with pytest.raises(MalformedRequest, match="is not a JSON value"):
        decode_request_body(b64(raw), SETTINGS)


def test_given_an_integer_over_the_digit_limit_when_decoded_then_malformed_request_not_a_crash() -> None:
    # Python refuses int("1" * 5000) with ValueError; that must be a 400, not a 500.
    with pytest.raises(MalformedRequest, match="not valid JSON"):
        decode_request_body(b64(b'{"n": ' + b"1" * 5000 + b"}"), SETTINGS)


def test_given_a_request_over_body_limit_plus_envelope_when_decoded_then_payload_too_large() -> None:
    # Given max_body_bytes = 10: the request may be 10 + 64 KiB of envelope
    config = replace(SETTINGS, max_body_bytes=10)
    limit = 10 + 64 * 1024
    at_limit = b"[" + b" " * (limit - 2) + b"]"
    # When exactly at the limit / Then it decodes
    assert decode_request_body(b64(at_limit), config) == []
    # When one byte over / Then 413 naming the whole request ($)
    with pytest.raises(PayloadTooLarge) as info:
        decode_request_body(b64(at_limit + b" "), config)
    assert info.value.path == "$"
    assert str(info.value) == f"The request is {limit + 1} bytes; the limit is {limit}."
    assert status_of(info.value) == 413


# =============================================================================================
# The authenticated-sender seam
# =============================================================================================


def test_given_a_sender_id_other_than_the_authenticated_sender_when_validated_then_forbidden() -> None:
    # Given a message from acme_shop-01 sent with the credentials of another sender
    with pytest.raises(SenderMismatch) as info:
        accept(message(), authenticated_sender_id="someone-else")
    # Then the answer is 403 FORBIDDEN naming $.senderId
    response = response_for_rejection(info.value, "req-7")
    assert response["statusCode"] == 403
    error = json.loads(response["body"])["error"]
    assert error["code"] == "FORBIDDEN"
    assert error["requestId"] == "req-7"
    assert error["details"] == [{"path": "$.senderId", "message": str(info.value)}]
    assert "authenticated sender" in error["message"]


def test_given_the_authenticated_sender_when_validated_then_it_passes() -> None:
    assert accept(message(), authenticated_sender_id="acme_shop-01").sender_id == "acme_shop-01"


def test_given_no_authenticated_sender_when_validated_then_the_check_is_skipped() -> None:
    assert accept(message(senderId="anyone"), authenticated_sender_id=None).sender_id == "anyone"


def test_given_a_sender_id_differing_only_by_case_when_validated_then_forbidden() -> None:
    with pytest.raises(SenderMismatch):
        accept(message(senderId="ACME_SHOP-01"), authenticated_sender_id="acme_shop-01")


# =============================================================================================
# content_hash: same content, same hash
# =============================================================================================

STORED = {
    "messageId": "m-1",
    "senderId": "s-1",
    "timestamp": "2026-01-31T11:59:00Z",
    "targetUrl": "https://example.com/hook",
    "method": "POST",
    "headers": {"X-A": "1", "X-B": "2"},
    "body": {"b": 1, "a": [1, {"y": 2, "x": 1}]},
}


def test_given_the_same_content_in_another_field_and_header_order_when_hashed_then_the_hash_is_equal() -> None:
    # Given the stored message with its fields and headers in another order (the body unchanged)
    reordered = {
        "body": STORED["body"],
        "headers": {"X-B": "2", "X-A": "1"},
        "method": "POST",
        "targetUrl": "https://example.com/hook",
        "timestamp": "2026-01-31T11:59:00Z",
        "senderId": "s-1",
        "messageId": "m-1",
    }
    # When hashed / Then it is the same content
    assert content_hash(reordered) == content_hash(STORED)
    assert re.fullmatch(r"[0-9a-f]{64}", content_hash(STORED))


@pytest.mark.parametrize(
    "change",
    [
        {"timestamp": "2026-01-31T11:59:01Z"},
        {"timestamp": "2027-06-01T00:00:00+02:00"},
        {"headers": {"x-a": "1", "X-B": "2"}},
        {"headers": {"X-B": "2", "x-A": "1"}},
        {"messageId": "m-2", "senderId": "s-2"},
    ],
    ids=["timestamp-re-stamped", "timestamp-other-zone", "header-name-case", "header-order-and-case", "ids"],
)
def test_given_only_timestamp_ids_or_header_name_case_differ_when_hashed_then_the_hash_is_equal(
    change: dict[str, Any],
) -> None:
    # Given the stored message re-stamped, or with header names in another case / When hashed
    # Then it is the same content: none of these changes the request that is delivered
    assert content_hash({**STORED, **change}) == content_hash(STORED)


@pytest.mark.parametrize(
    "change",
    [
        {"body": {"b": 2, "a": [1, {"y": 2, "x": 1}]}},
        {"body": {"a": [1, {"y": 2, "x": 1}], "b": 1}},
        {"body": {"b": 1, "a": [{"y": 2, "x": 1}, 1]}},
        {"body": "other"},
        {"targetUrl": "https://example.com/other"},
        {"targetUrl": "https://EXAMPLE.com/hook"},
        {"method": "PUT"},
        {"headers": {"X-A": "1", "X-B": "3"}},
        {"headers": {"X-A": "1", "X-B": "2 "}},
        {"headers": {"X-A": "1"}},
    ],
    ids=[
        "body-value",
        "body-key-order",
        "body-array-order",
        "body-text",
        "target-path",
        "target-host-case",
        "method",
        "header-value",
        "header-value-space",
        "header-missing",
    ],
)
def test_given_a_different_request_when_hashed_then_the_hash_differs(change: dict[str, Any]) -> None:
    assert content_hash({**STORED, **change}) != content_hash(STORED)


def test_given_validated_messages_with_reordered_headers_when_hashed_then_the_hashes_are_equal() -> None:
    first = accept(message(headers={"X-A": "1", "X-B": "2"}, body="x"))
    second = accept(message(headers={"X-B": "2", "X-A": "1"}, body="x", messageId="other-id"))
    assert first.content_hash == second.content_hash == content_hash(first.message)
    assert accept(message(headers={"X-A": "1", "X-B": "2"}, body="y")).content_hash != first.content_hash


def test_every_field_of_a_stored_message_is_in_the_fingerprint_or_deliberately_left_out() -> None:
    # Given a message with every field the schema allows / When validated
    valid = accept(message(method="PUT", headers={"X-A": "1"}, body={"a": 1}))
    # Then each stored field is compared (the request) or left out on purpose (the key, the stamp):
    # a new field must be added to content_hash or to this list of deliberate omissions
    fingerprinted, left_out = {"targetUrl", "method", "headers", "body"}, {"messageId", "senderId", "timestamp"}
    assert set(valid.message) == fingerprinted | left_out
    changed = {"targetUrl": "https://example.com/other", "method": "POST", "headers": {"X-A": "2"}, "body": "{}"}
    for name in fingerprinted:
        assert content_hash({**valid.message, name: changed[name]}) != valid.content_hash, name


def test_given_a_re_stamped_retry_when_validated_then_the_content_hash_is_unchanged() -> None:
    # Given a message, and the same message re-stamped a minute later (a client retrying)
    first = accept(message(timestamp="2026-01-31T11:58:00Z", body={"order": 42}))
    second = accept(message(timestamp="2026-01-31T11:59:00Z", body={"order": 42}))
    # When both are validated / Then they are the same content
    assert first.content_hash == second.content_hash


def test_given_a_json_body_with_other_whitespace_or_escapes_when_validated_then_the_hash_is_equal() -> None:
    # Given one JSON body as two serialisers write it (compact and raw, pretty-printed with escapes)
    compact = json.loads('{"a":"\u00e9","b":[1,2]}')
    pretty = json.loads(r'{ "a": "\u00e9",  "b": [ 1, 2 ] }')
    # When both are validated
    first, second = accept(message(body=compact)), accept(message(body=pretty))
    # Then the bytes to deliver are the same, and so is the content
    assert first.message["body"] == second.message["body"] == '{"a":"\u00e9","b":[1,2]}'
    assert first.content_hash == second.content_hash


def test_given_a_json_body_with_keys_in_another_order_when_validated_then_the_content_differs() -> None:
    # Given one object with its keys in two orders (two different byte strings on the wire)
    first = accept(message(body={"a": 1, "b": 2}))
    second = accept(message(body={"b": 2, "a": 1}))
    # When validated / Then they are different content: the delivered bytes (and signature) differ
    assert first.message["body"] != second.message["body"]
    assert first.content_hash != second.content_hash


# =============================================================================================
# Property: mutating one field of a valid message never crashes validation
# =============================================================================================

ID_ALPHABET = string.ascii_letters + string.digits + "._:-"
TOKEN_ALPHABET = "!#$%&'*+.^_`|~" + string.ascii_letters + string.digits + "-"
FIELDS = ("messageId", "senderId", "timestamp", "targetUrl", "method", "headers", "body", "extra")
FUZZ_SETTINGS = replace(SETTINGS, max_body_bytes=512, max_header_count=8, max_header_bytes=1024)

identifiers = st.text(ID_ALPHABET, min_size=1, max_size=128)
header_names = st.text(TOKEN_ALPHABET, min_size=1, max_size=20).filter(
    lambda name: name.lower() not in RESERVED_HEADERS and not name.lower().startswith(RESERVED_HEADER_PREFIX)
)
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
nasty_strings = st.sampled_from(
    [
        "",
        " ",
        "GET",
        "HEAD",
        "POST",
        "a\n",
        "\x00",
        "\ud800",
        "\r\nX-Injected: 1",
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://[::1]/",
        "https://user:pw@example.com/",
        "ftp://example.com/",
        "javascript:alert(1)",
        "2026-01-31T12:00:00",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
        "x" * 600,
        "\u00e9" * 300,
        "a" * 129,
        "https://example.com/" + "a" * 2100,
    ]
)
garbage = st.one_of(json_values, nasty_strings)


@st.composite
def valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {
        "messageId": draw(identifiers),
        "senderId": draw(identifiers),
        "timestamp": (NOW - timedelta(seconds=draw(st.integers(-300, 29 * 86_400)))).isoformat(),
        "targetUrl": draw(
            st.sampled_from(
                [
                    "https://example.com/hook",
                    "http://93.184.216.34:8080/x?y=1",
                    "http://[2606:2800:220:1:248:1893:25c8:1946]/",
                    "https://api.example.org:8443/a/b#frag",
                ]
            )
        ),
    }
    method = draw(st.sampled_from([MISSING, "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]))
    if method is not MISSING:
        document["method"] = method
    headers = draw(st.dictionaries(header_names, header_values, max_size=4))
    lowered = {name.lower() for name in headers}
    if headers and len(lowered) == len(headers):
        document["headers"] = headers
    if method not in ("GET", "HEAD"):
        body = draw(
            st.one_of(
                st.just(MISSING),
                st.text(max_size=100),
                st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4),
                st.lists(st.integers(), max_size=5),
            )
        )
        if body is not MISSING:
            document["body"] = body
    return document


def _names(path: str) -> str:
    """The top-level field a detail path points at: "$.headers['X']" -> "headers"."""
    match = re.match(r"^\$(?:\.([A-Za-z][A-Za-z0-9_]*)|\['((?:[^'\\]|\\.)*)'\])", path)
    assert match, f"detail path {path!r} does not name a field"
    return match.group(1) or match.group(2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=valid_documents(), field=st.sampled_from(FIELDS), value=garbage)
def test_given_a_valid_message_with_one_field_mutated_when_validated_then_only_relay_errors_naming_it(
    document: dict[str, Any], field: str, value: Any
) -> None:
    # Given a valid message (it passes as built)
    sender = document["senderId"]
    validate_message(document, FUZZ_SETTINGS, authenticated_sender_id=sender, now=NOW)
    # When one field is replaced by garbage (or an unknown field is added)
    mutated = {**document, field: value}
    try:
        validate_message(mutated, FUZZ_SETTINGS, authenticated_sender_id=sender, now=NOW)
    except MessageInvalid as error:
        # Then every detail names a field, and the mutated field is the one named
        # (a GET/HEAD method makes the existing body the offender).
        named = {_names(detail.path) for detail in error.details}
        assert error.details
        allowed = {field} | ({"body"} if field == "method" else set())
        assert named <= allowed, (field, error.details)
        assert all(detail.message for detail in error.details)
        response_for_rejection(error, "req")["body"].encode("utf-8")
    except PayloadTooLarge as error:
        assert field == "body"
        assert error.path == "$.body"
    except SenderMismatch:
        assert field == "senderId"
    # Any other exception fails the test.
