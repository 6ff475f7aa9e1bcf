"""Property-based tests of the message validator: over ten thousand generated messages.

Every message goes through exactly what the validate Lambda runs on a request,
`ingest.validate` for POST /messages: the raw bytes are decoded (`decode_request_body`), validated
(`validate_message`) and checked against the state size limit; a RelayError becomes the answer of
`responses.response_for_rejection`, any other exception escapes (and would be a 500). The properties:

- a valid message (built from the schema's parts: identifiers, RFC 3339 timestamps inside the
  accepted window, public http(s) URLs, the method enum, headers within the limits, string or JSON
  bodies) is accepted, normalised, and its content hash is stable;
- an invalid one (one mutation of a valid message: wrong types, bad ids, bad or private URLs and
  odd IPv4 spellings, CR/LF/NUL in header names and values, reserved headers, too many headers,
  oversized bodies, bad timestamps, unknown fields, lone surrogates, deep JSON, broken bytes) is
  rejected with a RelayError that `responses.response_for_rejection` maps to a 4xx whose details
  name the field, by a JSON path starting with "$": never another exception, never a 500.

The last test prints how many messages were generated and checks there were at least 10,000
(about 30 s in all). FUZZ_SCALE=10 runs ten times as many.
"""

from __future__ import annotations

import base64
import json
import os
import string
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.domain.config import Settings, message_schema
from functions.domain.validation import HOP_BY_HOP_HEADERS, RESERVED_HEADERS
from functions.services.ingest import validate
from functions.services.ingest_payloads import IngestRequest
from tests.support import validation_settings

# Hypothesis warns when it prints a failing example of hundreds of KB; those are expected here.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")

SCALE = int(os.environ.get("FUZZ_SCALE") or 1)
VALID_EXAMPLES = 2_000 * SCALE
INVALID_EXAMPLES_EACH = 300 * SCALE  # per kind of mutation (20 kinds)
BYTES_EXAMPLES = 2_000 * SCALE
MINIMUM_TOTAL = 10_000

# validate reads the clock; generated timestamps keep a margin of an hour (past) and a minute
# (future) from the edges of the accepted window, so a slow run does not move them across.
NOW = datetime.now(UTC).replace(microsecond=0)
PAST_MARGIN, FUTURE_MARGIN = timedelta(hours=1), timedelta(minutes=1)
SETTINGS: Settings = validation_settings()
LIMITS = message_schema()["x-relay-limits"]
SENDER = "acme_shop-01"
EXAMPLES: Counter[str] = Counter()
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# -- what the validate Lambda does with a request ------------------------------------------------


def run_validator(raw: bytes, authenticated: str = SENDER) -> dict[str, Any]:
    """The validate step's output for one message: its item {message, contentHash}, or {response}."""
    body = base64.b64encode(raw).decode("ascii")
    state = {"requestId": "req-1", "senderId": authenticated, "bodyBase64": body, "shape": "message"}
    output = validate(IngestRequest.from_event(state), SETTINGS)
    if "response" in output:
        return output
    (item,) = output["items"]
    return dict(item)


def encode(document: Any) -> bytes:
    """Compact JSON bytes as a client sends them; lone surrogates only exist as \\u escapes in JSON."""
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def accepted(raw: bytes) -> dict[str, Any]:
    output = run_validator(raw)
    assert "response" not in output, (output["response"], raw[:300])
    return output


def assert_rejected(raw: bytes, expected_path: str | None, authenticated: str = SENDER) -> dict[str, Any]:
    """The request is refused with a 4xx naming `expected_path` (a prefix); returns the error body."""
    output = run_validator(raw, authenticated)
    assert "response" in output, f"accepted: {raw[:300]!r}"
    answer = output["response"]
    assert 400 <= answer["statusCode"] < 500, answer
    error = json.loads(answer["body"])["error"]
    assert error["code"] != "SYSTEM_ERROR" and error["requestId"] == "req-1"
    paths = [detail["path"] for detail in error["details"]]
    assert paths and all(path.startswith("$") for path in paths), error
    if expected_path is not None:
        assert any(path.startswith(expected_path) for path in paths), (expected_path, error)
    return dict(error)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- valid messages, from the schema's parts -----------------------------------------------------

# Plain alphabets rather than regexes: generation dominates the run time.
ID_ALPHABET = string.ascii_letters + string.digits + "._:-"
IDENTIFIER = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=128)
LOWER = string.ascii_lowercase
LABEL = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from(LOWER),
    st.text(alphabet=LOWER + string.digits + "-", max_size=12),
    st.text(alphabet=LOWER + string.digits, min_size=1, max_size=1),
)
TLD = st.sampled_from(["com", "org", "net", "io", "dev", "example", "co.uk", "xn--p1ai"])
SEGMENT = st.lists(
    st.one_of(
        st.sampled_from(string.ascii_letters + string.digits + "._~!$&'()*+,;=:@-"), st.just("%2F"), st.just("%C3%A9")
    ),
    max_size=12,
).map("".join)
PATH = st.lists(SEGMENT, max_size=4).map(lambda segments: "".join(f"/{segment}" for segment in segments))
QUERY = st.one_of(
    st.just(""), st.text(alphabet=string.ascii_letters + string.digits + "=&._~-", max_size=30).map("?".__add__)
)
PUBLIC_IPV4 = st.sampled_from(["93.184.216.34", "1.1.1.1", "8.8.8.8", "151.101.1.69"])
PUBLIC_IPV6 = st.sampled_from(["[2606:2800:220:1:248:1893:25c8:1946]", "[2001:4860:4860::8888]"])
HEADER_NAME = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(string.ascii_letters),
    st.text(alphabet=string.ascii_letters + string.digits + "-", max_size=30),
).filter(lambda name: name.lower() not in RESERVED_HEADERS and not name.lower().startswith("webhook-"))
HEADER_VALUE = st.text(alphabet=string.ascii_letters + string.digits + " \t-_.,;:/=+*()[]{}\"'!?@#$%^&~", max_size=60)
JSON_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    oldest = timedelta(days=SETTINGS.ttl_days) - PAST_MARGIN
    newest = timedelta(seconds=SETTINGS.max_future_skew_seconds) - FUTURE_MARGIN
    offset = draw(st.integers(-int(oldest.total_seconds()), int(newest.total_seconds())))
    moment = NOW + timedelta(seconds=offset)
    zone = draw(st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]))
    text = moment.astimezone(zone).isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds"])))
    return text.replace("+00:00", draw(st.sampled_from(["Z", "+00:00"])))


@st.composite
def target_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS", "Http"]))
    host = draw(
        st.one_of(
            st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(LABEL, min_size=1, max_size=3), TLD),
            PUBLIC_IPV4,
            PUBLIC_IPV6,
        )
    )
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    return f"{scheme}://{host}{port}{draw(PATH)}{draw(QUERY)}"


@st.composite
def header_maps(draw: st.DrawFn) -> dict[str, str]:
    names = draw(st.lists(HEADER_NAME, max_size=8, unique_by=str.lower))
    return {name: draw(HEADER_VALUE) for name in names}


@st.composite
def valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messageId": draw(IDENTIFIER),
        "senderId": SENDER,
        "timestamp": draw(timestamps()),
        "targetUrl": draw(target_urls()),
    }
    method = draw(st.sampled_from([None, *message_schema()["properties"]["method"]["enum"]]))
    if method is not None:
        message["method"] = method
    if draw(st.booleans()):
        message["headers"] = draw(header_maps())
    if method not in ("GET", "HEAD") and draw(st.booleans()):
        message["body"] = draw(
            st.one_of(
                st.text(max_size=100),
                st.dictionaries(st.text(max_size=10), JSON_VALUE, max_size=5),
                st.lists(JSON_VALUE, max_size=5),
            )
        )
    return message


@settings(FUZZ, max_examples=VALID_EXAMPLES)
@given(valid_messages())
def test_valid_messages_are_accepted(message: dict[str, Any]) -> None:
    EXAMPLES["valid"] += 1
    raw = encode(message)
    valid = accepted(raw)
    normalised = valid["message"]
    # The normalised message keeps every field; a JSON body becomes its compact text, once
    assert (normalised["messageId"], normalised["senderId"]) == (message["messageId"], SENDER)
    assert normalised["method"] == message.get("method", "POST")
    assert normalised["targetUrl"] == message["targetUrl"]
    if isinstance(message.get("body"), str):
        assert normalised["body"] == message["body"]
    elif "body" in message:
        assert json.loads(normalised["body"]) == json.loads(json.dumps(message["body"]))
        assert any(name.lower() == "content-type" for name in normalised["headers"])
    # The same message sent again, spelt differently (ASCII escapes, spaces), hashes the same
    assert accepted(json.dumps(message, ensure_ascii=True).encode())["contentHash"] == valid["contentHash"]
    # The authenticated sender must be the body's senderId (403 naming $.senderId)
    error = assert_rejected(raw, "$.senderId", authenticated="somebody-else")
    assert error["code"] == "FORBIDDEN"


# -- invalid messages: one mutation of a valid one ----------------------------------------------

WRONG_TYPES = st.sampled_from([None, 0, 1.5, True, [], {}, ["x"], {"a": 1}])
BAD_IDS = st.one_of(
    st.sampled_from(["", " ", "a b", "a/b", "a#b", "ü", "id\n", "\nid", "a\x00b", "x" * 129, "a%2Fb", "😀"]),
    st.text(min_size=1, max_size=40).filter(
        lambda s: any(c not in string.ascii_letters + string.digits + "._:-" for c in s)
    ),
    st.integers(129, 2_000).map(lambda n: "a" * n),
)
BAD_URLS = st.sampled_from(
    [
        "",
        "example.com/hook",
        "//example.com/hook",
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://",
        "http:///path",
        "https://user:pass@example.com/",
        "https://user@example.com/",
        "https://example.com/a b",
        "https://exa mple.com/",
        "https://example.com/\t",
        "https://example.com:0/",
        "https://example.com:99999/",
        "https://example.com:port/",
        "http://localhost/hook",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://127.0.0.1/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://[::1]/",
        "http://[::]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[64:ff9b::a00:1]/",
        "http://[2002:7f00:1::]/",
        "http://[::127.0.0.1]/",
        "http://[not-ipv6]/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://127.0.1/",
        "http://1.2.3.04/",
        "http://1.2.3.4.5/",
        "http://example.123/",
        "http://-bad-.example.com/",
        "http://exa_mple..com/",
        "http://ex\u00e4mple.com/",
        "http://example.com\u3002evil.com/",
        "https://example.com/\ud800",
        "https://" + "a" * 2100 + ".com/",
        "https://example.com/" + "p" * 2100,
    ]
)
RESERVED_HEADER_NAMES = st.sampled_from(
    [
        *sorted(HOP_BY_HOP_HEADERS),
        "Host",
        "HOST",
        "content-length",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "webhook-id",
        "Webhook-Signature",
        "WEBHOOK-TIMESTAMP",
        "webhook-anything",
    ]
)
INJECTIONS = st.sampled_from(["\r", "\n", "\r\n", "\x00", "\r\nX-Injected: 1", "\nSet-Cookie: a=b"])
BAD_TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "",
            "yesterday",
            "2026-01-31",
            "12:00:00Z",
            "2026-01-31T12:00:00",
            "2026-01-31 12:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-31T25:00:00Z",
            "2026-01-31T12:00:00+25:00",
            "2026-01-31T12:00:00ZZ",
            "31/01/2026",
            "1769860800",
            "2026-01-31T12:00:00.Z",
            "x" * 65,
            "2026-01-31T12:00:00\ud800Z",
        ]
    ),
    # Outside the window: older than the retention, or too far in the future
    st.integers(31 * 86_400, 400 * 86_400).map(lambda s: stamp(NOW - timedelta(seconds=s))),
    st.integers(3_600, 400 * 86_400).map(lambda s: stamp(NOW + timedelta(seconds=s))),
)
KNOWN_FIELDS = set(message_schema()["properties"])
UNKNOWN_FIELD = st.text(min_size=1, max_size=30).filter(lambda name: name not in KNOWN_FIELDS)
LONE_SURROGATE = st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\ud83d"])

BODY_TYPES = ([], {}, ["x"], {"a": 1})  # a body may be a string, an object or an array
Mutation = Callable[[st.DrawFn, dict[str, Any]], tuple[Any, str | None]]


def _wrong_type(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    field = draw(st.sampled_from(["messageId", "senderId", "timestamp", "targetUrl", "method", "headers", "body"]))
    value = draw(
        WRONG_TYPES.filter(lambda v: not (field == "headers" and v == {}) and not (field == "body" and v in BODY_TYPES))
    )
    if field == "body" and message.get("method") in ("GET", "HEAD"):
        message.pop("method")
    return {**message, field: value}, f"$.{field}"


def _bad_id(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    field = draw(st.sampled_from(["messageId", "senderId"]))
    return {**message, field: draw(BAD_IDS)}, f"$.{field}"


def _missing_field(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    field = draw(st.sampled_from(["messageId", "senderId", "timestamp", "targetUrl"]))
    return {name: value for name, value in message.items() if name != field}, f"$.{field}"


def _bad_url(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    return {**message, "targetUrl": draw(BAD_URLS)}, "$.targetUrl"


def _bad_method(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    method = draw(st.sampled_from(["get", "post", "OPTIONS", "TRACE", "CONNECT", "", "POST ", "PO\nST"]))
    return {**message, "method": method}, "$.method"


def _body_without_body_method(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    return {**message, "method": draw(st.sampled_from(["GET", "HEAD"])), "body": draw(st.text(max_size=5))}, "$.body"


def _header_injection(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    injection = draw(INJECTIONS)
    position = draw(st.sampled_from(["name-end", "name-middle", "value-end", "value-middle", "value-start"]))
    name, value = draw(HEADER_NAME), draw(HEADER_VALUE)
    if position == "name-end":
        name += injection
    elif position == "name-middle":
        name = name[:1] + injection + name[1:]
    elif position == "value-end":
        value += injection
    elif position == "value-middle":
        value = value[:1] + injection + value[1:]
    else:
        value = injection + value
    return {**message, "headers": {**message.get("headers", {}), name: value}}, "$.headers"


def _other_control_characters(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    character = draw(st.sampled_from(["\x01", "\x07", "\x1b", "\x7f", "\u2028", "\u0085", "\ufeff"]))
    return {**message, "headers": {"X-Ctl": f"a{character}b"}}, "$.headers"


def _bad_header_name(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    name = draw(st.sampled_from(["", "X A", "X:A", "X(A)", "Ä", "X/A", "x" * 257, "X\tA", '"q"', "X,A"]))
    return {**message, "headers": {name: "v"}}, "$.headers"


def _reserved_header(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    return {**message, "headers": {draw(RESERVED_HEADER_NAMES): "v"}}, "$.headers"


def _duplicate_header(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    name = draw(HEADER_NAME)  # starts with a letter: its two spellings differ
    return {**message, "headers": {name.lower(): "a", name.upper(): "b"}}, "$.headers"


def _too_many_headers(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    # 10,000 headers: test_ten_thousand_headers_name_the_headers_field
    count = draw(st.sampled_from([LIMITS["maxHeaderCount"] + 1, 65, 200, 1_000]))
    return {**message, "headers": {f"H{i}": "" for i in range(count)}}, "$.headers"


def _oversized_headers(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    limit = LIMITS["maxHeaderBytes"]
    if draw(st.booleans()):  # each value within its own limit, too many bytes in all
        return {**message, "headers": {"X-A": "v" * (limit // 2), "X-B": "v" * (limit // 2)}}, "$.headers"
    return {**message, "headers": {"X-Big": "v" * (limit + draw(st.integers(1, 100)))}}, "$.headers"


def _oversized_body(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    limit = SETTINGS.max_body_bytes
    excess = draw(st.integers(1, 60_000))
    shape = draw(st.sampled_from(["ascii", "multibyte", "json", "escapes"]))
    if shape == "ascii":
        body: Any = "x" * (limit + excess)
    elif shape == "multibyte":
        body = "€" * ((limit + excess) // 3 + 1)  # fewer characters than the limit, more bytes
    elif shape == "json":
        body = {"items": ["y" * 100] * ((limit + excess) // 100)}
    else:
        # Within the byte limits (64 KiB body, 8 KiB headers) but over the state size limit once
        # JSON-escaped: each emoji is 4 bytes, and 12 as \\ud83d\\ude00.
        bare = {k: v for k, v in message.items() if k != "method"}
        return {**bare, "headers": {"X-E": "é" * 4_000}, "body": "😀" * (limit // 4)}, "$.body"
    return {**{k: v for k, v in message.items() if k != "method"}, "body": body}, "$.body"


def _bad_timestamp(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    return {**message, "timestamp": draw(BAD_TIMESTAMPS)}, "$.timestamp"


def _unknown_field(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    fields = draw(st.lists(UNKNOWN_FIELD, min_size=1, max_size=3, unique=True))
    return {**message, **dict.fromkeys(fields, draw(JSON_VALUE))}, "$"


def _many_unknown_fields(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    count = draw(st.sampled_from([60, 500, 2_000]))
    return {**message, **{f"extra{i}": i for i in range(count)}}, "$"


def _lone_surrogate(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    surrogate = draw(LONE_SURROGATE)
    where = draw(st.sampled_from(["body", "header-value", "header-name", "messageId", "targetUrl", "field-name"]))
    bare = {k: v for k, v in message.items() if k != "method"}
    if where == "body":
        return {
            **bare,
            "body": draw(st.sampled_from([surrogate, {"k": surrogate}, [surrogate], {surrogate: 1}])),
        }, "$.body"
    if where == "header-value":
        return {**message, "headers": {"X-S": f"a{surrogate}"}}, "$.headers"
    if where == "header-name":
        return {**message, "headers": {f"X{surrogate}": "v"}}, "$.headers"
    if where == "messageId":
        return {**message, "messageId": f"id{surrogate}"}, "$.messageId"
    if where == "targetUrl":
        return {**message, "targetUrl": f"https://example.com/{surrogate}"}, "$.targetUrl"
    return {**message, f"x{surrogate}": 1}, "$"


def _deep_body(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    depth = draw(st.sampled_from([2_000, 10_000, 20_000]))
    bare = {k: v for k, v in message.items() if k != "method"}
    # Built as text: Python cannot even json.dumps such a structure.
    prefix = encode(bare).decode()[:-1] + ',"body":'
    nested = draw(st.sampled_from(["[", '{"a":']))
    closing = "]" if nested == "[" else "}"
    return (prefix + nested * depth + "1" + closing * depth + "}").encode(), "$"


def _not_an_object(draw: st.DrawFn, message: dict[str, Any]) -> tuple[Any, str | None]:
    return draw(st.sampled_from([[message], "message", 42, None, True, []])), "$"


MUTATIONS: dict[str, Mutation] = {
    "wrong type": _wrong_type,
    "bad id": _bad_id,
    "missing field": _missing_field,
    "bad URL": _bad_url,
    "bad method": _bad_method,
    "body with GET/HEAD": _body_without_body_method,
    "CR/LF/NUL in a header": _header_injection,
    "control character in a header value": _other_control_characters,
    "bad header name": _bad_header_name,
    "reserved header": _reserved_header,
    "duplicate header": _duplicate_header,
    "too many headers": _too_many_headers,
    "oversized headers": _oversized_headers,
    "oversized body": _oversized_body,
    "bad timestamp": _bad_timestamp,
    "unknown field": _unknown_field,
    "thousands of unknown fields": _many_unknown_fields,
    "lone surrogate": _lone_surrogate,
    "deep JSON": _deep_body,
    "not an object": _not_an_object,
}


@st.composite
def base_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message that is cheap to generate: the mutation is what varies."""
    message: dict[str, Any] = {
        "messageId": draw(st.text(alphabet=ID_ALPHABET, min_size=1, max_size=12)),
        "senderId": SENDER,
        "timestamp": stamp(NOW - timedelta(seconds=draw(st.integers(0, 86_400)))),
        "targetUrl": draw(st.sampled_from(["https://example.com/hooks", "http://93.184.216.34:8080/a?b=c"])),
    }
    if draw(st.booleans()):
        message["method"] = draw(st.sampled_from(["POST", "PUT", "GET"]))
    if draw(st.booleans()):
        message["headers"] = {"X-Trace": draw(st.text(alphabet=string.ascii_letters, max_size=8))}
    if message.get("method") != "GET" and draw(st.booleans()):
        message["body"] = draw(st.sampled_from(["text", {"order": 1}, [1, 2]]))
    return message


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@settings(FUZZ, max_examples=INVALID_EXAMPLES_EACH)
@given(data=st.data())
def test_invalid_messages_are_rejected_with_a_4xx_naming_the_field(mutation: str, data: st.DataObject) -> None:
    message = data.draw(base_messages(), label="valid message")
    mutated, path = MUTATIONS[mutation](data.draw, message)
    raw = mutated if isinstance(mutated, bytes) else encode(mutated)
    EXAMPLES["invalid"] += 1
    EXAMPLES[f"invalid: {mutation}"] += 1
    assert_rejected(raw, path)


# -- invalid bytes ---------------------------------------------------------------------------------

BROKEN_BYTES = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"{",
            b"{not json",
            b'{"a":1}{"b":2}',
            b'{"messageId": "a",}',
            b"\xef\xbb\xbf{}",  # UTF-8 byte order mark
            b'{"body": "\xff\xfe"}',  # invalid UTF-8 in a string
            b'{"body": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 (invalid)
            b'{"body": "\xc0\xaf"}',  # overlong encoding
            b'{"x": NaN}',
            b'{"x": Infinity}',
            b'{"x": -Infinity}',
            b'{"x": 1' + b"0" * 5_000 + b"}",  # an integer over Python's digit limit
            b'{"x": 1e999999}',
            b'{"x": "\\ud800"}',
            b'{"x": "\\u12"}',
            b"[" * 100_000,
            b'{"a":' * 20_000,
            b"\x00" * 10,
            json.dumps("a string").encode(),
            b"null",
        ]
    ),
)


@settings(FUZZ, max_examples=BYTES_EXAMPLES)
@given(BROKEN_BYTES)
def test_broken_request_bytes_are_rejected_as_4xx(raw: bytes) -> None:
    EXAMPLES["broken bytes"] += 1
    assert_rejected(raw, "$")


# -- the body limit is exact -------------------------------------------------------------------------


@settings(FUZZ, max_examples=200)
@given(st.integers(0, 64), st.sampled_from(["x", "é", "€", "😀"]))
def test_the_body_limit_is_counted_in_utf8_bytes(slack: int, character: str) -> None:
    EXAMPLES["body limit"] += 1
    width = len(character.encode("utf-8"))
    base = {"messageId": "m1", "senderId": SENDER, "timestamp": stamp(NOW), "targetUrl": "https://example.com/"}
    fits = character * ((SETTINGS.max_body_bytes - slack) // width)
    assert accepted(encode({**base, "body": fits}))["message"]["body"] == fits
    over = fits + character * (slack // width + 1)
    if len(over.encode("utf-8")) > SETTINGS.max_body_bytes:
        error = assert_rejected(encode({**base, "body": over}), "$.body")
        assert error["code"] == "PAYLOAD_TOO_LARGE"


def test_ten_thousand_headers_name_the_headers_field() -> None:
    message = {
        "messageId": "m1",
        "senderId": SENDER,
        "timestamp": stamp(NOW),
        "targetUrl": "https://example.com/",
        "headers": {f"H{i}": "" for i in range(10_000)},
    }
    error = assert_rejected(encode(message), "$.headers")
    assert any("10000 headers" in detail["message"] for detail in error["details"])
    assert len(error["details"]) <= 50  # an answer names at most 50 problems


def test_at_least_ten_thousand_messages_were_generated(capsys: pytest.CaptureFixture[str]) -> None:
    if not {"valid", "invalid", "broken bytes"} <= set(EXAMPLES):
        pytest.skip("counts the examples of the other tests of this module; run them together")
    total = EXAMPLES["valid"] + EXAMPLES["invalid"] + EXAMPLES["broken bytes"] + EXAMPLES["body limit"]
    kinds = {key.removeprefix("invalid: ") for key in EXAMPLES if key.startswith("invalid: ")}
    with capsys.disabled():  # shown in every run, not only on failure
        print(
            f"\nvalidator properties: {total} generated messages: {EXAMPLES['valid']} valid, "
            f"{EXAMPLES['invalid']} invalid ({len(kinds)} kinds of mutation, "
            f"{min(EXAMPLES[f'invalid: {kind}'] for kind in kinds)}+ each), "
            f"{EXAMPLES['broken bytes']} broken request bodies, {EXAMPLES['body limit']} at the body limit"
        )
    assert total >= MINIMUM_TOTAL, dict(EXAMPLES)
    assert kinds == set(MUTATIONS), "every mutation was exercised"
