"""Targets: origin normalisation, the token bucket and lease math, the PUT /targets schema, settings."""

from __future__ import annotations

import pytest

from functions.contract.settings_names import Setting
from functions.domain.exceptions import MessageInvalid
from functions.domain.flow import FlowState, Target, Wait, json_body, refill, take, validate_target
from functions.domain.origins import origin_of, origin_of_id, parse_origin, target_id
from relay.cli import peak_per_second
from stacks.settings import RelaySettings, SettingsError


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Hooks.Example.COM/a/b?x=1", "https://hooks.example.com"),
        ("HTTPS://example.com:443/", "https://example.com"),
        ("http://example.com:80/x", "http://example.com"),
        ("http://example.com:8080/x", "http://example.com:8080"),
        ("https://user:pw@example.com:8443", "https://example.com:8443"),
        ("http://[::1]:9000/p", "http://[::1]:9000"),
        ("http://127.0.0.1:5000/ok", "http://127.0.0.1:5000"),
    ],
)
def test_origin_of_normalises_scheme_host_and_port(url: str, origin: str) -> None:
    # Given a target URL / When its origin is taken / Then it is scheme://host[:port], lowercase, no default port
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    "url", ["ftp://example.com", "example.com", "https://", "http://example.com:99999", f"https://{'a' * 254}"]
)
def test_origin_of_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        origin_of(url)


def test_parse_origin_accepts_an_origin_and_star_only() -> None:
    # Given origins as a sender writes them / Then they are normalised; paths, queries, user info are refused
    assert parse_origin("https://Example.com/") == "https://example.com"
    assert parse_origin("*") == "*"
    for bad in ("https://example.com/hooks", "https://example.com?x=1", "https://u@example.com", "mailto:x"):
        with pytest.raises(ValueError):
            parse_origin(bad)


@pytest.mark.parametrize(
    ("origin", "identifier"),
    [
        ("https://hooks.example.com", "https:hooks.example.com"),
        ("http://127.0.0.1:9000", "http:127.0.0.1:9000"),
        ("https://[::1]:8443", "https:[::1]:8443"),
        ("*", "*"),
    ],
)
def test_a_target_id_has_no_slash_and_names_its_origin_again(origin: str, identifier: str) -> None:
    # Given an origin / When it becomes a path id / Then no "/" is left (API Gateway routes on a decoded
    # %2F) and the id (or the origin itself) names the same origin again
    assert target_id(origin) == identifier
    assert "/" not in identifier
    assert origin_of_id(identifier) == origin == origin_of_id(origin)
    assert origin_of_id("HTTPS:Hooks.Example.com:443") == "https://hooks.example.com"


@pytest.mark.parametrize("bad", ["", "example.com", "ftp:example.com", "https:", "https:example.com/x", "https://a/b"])
def test_origin_of_id_refuses_what_names_no_target(bad: str) -> None:
    with pytest.raises(ValueError):
        origin_of_id(bad)


def test_refill_grows_with_time_up_to_the_burst() -> None:
    # Given an empty bucket of 2/s, burst 2
    # Then 250 ms later it holds half a token, and never more than the burst
    assert refill(0.0, 1_000, 1_250, 2.0, 2.0) == pytest.approx(0.5)
    assert refill(0.0, 1_000, 60_000, 2.0, 2.0) == 2.0
    assert refill(1.0, 1_000, 500, 2.0, 2.0) == 1.0  # a clock going backwards adds nothing


def test_a_new_bucket_is_full_then_empties_then_says_how_long_to_wait() -> None:
    # Given a target limited to 2/s (burst 2) with no state yet
    limits = Target("https://a.example", rate_per_second=2.0)
    state = take(None, limits, 10_000, "p1", 25_000)
    # When two permits are taken at once, then a third
    assert isinstance(state, FlowState) and state.tokens == pytest.approx(1.0) and state.version == 1
    state = take(state, limits, 10_000, "p2", 25_000)
    assert isinstance(state, FlowState) and state.tokens == pytest.approx(0.0) and state.version == 2
    third = take(state, limits, 10_000, "p3", 25_000)
    # Then the third waits half a second (one token at 2/s), and goes after it
    assert third == pytest.approx(0.5)
    later = take(state, limits, 10_500, "p3", 25_000)
    assert isinstance(later, FlowState) and later.tokens == pytest.approx(0.0)
    assert Wait(0.5).whole_seconds == 1 and Wait(2.01).whole_seconds == 3


def test_a_slow_rate_bucket_holds_one_token() -> None:
    # Given 0.5/s: the burst is one token
    limits = Target("https://a.example", rate_per_second=0.5)
    state = take(None, limits, 0, "p1", 1_000)
    assert isinstance(state, FlowState)
    # Then the next one waits two seconds
    assert take(state, limits, 0, "p2", 1_000) == pytest.approx(2.0)


def test_concurrency_slots_are_leases_that_run_out() -> None:
    # Given a target allowing one attempt in flight, held by p1 until t=5000
    limits = Target("https://a.example", max_concurrency=1)
    held = take(None, limits, 0, "p1", 5_000)
    assert isinstance(held, FlowState) and held.leases == {"p1": 5_000}
    # When another asks while it is held, it waits; after the lease ran out (a crashed holder), it goes
    assert isinstance(take(held, limits, 1_000, "p2", 5_000), float)
    after = take(held, limits, 5_001, "p2", 5_000)
    assert isinstance(after, FlowState) and after.leases == {"p2": 10_001}


def test_validate_target_names_every_offending_field() -> None:
    # Given a body with a bad origin type, a negative rate and a fractional concurrency
    with pytest.raises(MessageInvalid) as raised:
        validate_target({"origin": 5, "ratePerSecond": -1, "maxConcurrency": 1.5, "extra": True})
    paths = {detail.path for detail in raised.value.details}
    # Then each is named
    assert {"$.origin", "$.ratePerSecond", "$.maxConcurrency", "$.extra"} <= paths


def test_validate_target_refuses_a_url_with_a_path_and_normalises_an_origin() -> None:
    with pytest.raises(MessageInvalid) as raised:
        validate_target({"origin": "https://example.com/hooks", "ratePerSecond": 1})
    assert [d.path for d in raised.value.details] == ["$.origin"]
    with pytest.raises(MessageInvalid) as missing:
        validate_target({"ratePerSecond": 1})
    assert [d.path for d in missing.value.details] == ["$.origin"]
    target = validate_target({"origin": "HTTPS://Example.com:443", "ratePerSecond": 2, "maxConcurrency": None})
    assert (target.origin, target.rate_per_second, target.max_concurrency) == ("https://example.com", 2.0, None)


def test_deployment_defaults_reach_the_delivery_functions_and_are_checked() -> None:
    # Given relay.targets in cdk.json
    settings = RelaySettings.from_mapping({"targets": {"defaultRatePerSecond": 5, "defaultMaxConcurrency": None}})
    # Then the delivery functions get the rate and no concurrency variable (null = unlimited)
    environment = settings.delivery_environment()
    assert environment[Setting.TARGET_DEFAULT_RATE_PER_SECOND] == "5"
    assert Setting.TARGET_DEFAULT_MAX_CONCURRENCY not in environment
    assert Setting.TARGET_DEFAULT_RATE_PER_SECOND not in RelaySettings.from_mapping({}).delivery_environment()
    for bad in ({"defaultRatePerSecond": 0}, {"defaultMaxConcurrency": 1.5}, {"rate": 1}):
        with pytest.raises(SettingsError):
            RelaySettings.from_mapping({"targets": bad})


def test_peak_per_second_counts_the_busiest_one_second_window() -> None:
    assert peak_per_second([0.0, 0.1, 0.9, 1.0, 1.95, 2.0]) == 3
    assert peak_per_second([]) == 0


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ('{"origin": "https://a.example", "ratePerSecond": NaN}', "$"),
        ('{"ratePerSecond": Infinity}', "$"),
        ("[" * 100_000, "$[0]"),
        ('{"origin": "https://a.example", "ratePerSecond": ' + "[" * 65 + "]" * 65 + "}", "$.ratePerSecond"),
    ],
)
def test_a_targets_body_that_is_not_json_is_a_400_naming_it(body: str, path: str) -> None:
    # Given what Python's json would take but JSON is not (NaN, Infinity) or nesting past the limit
    # When it is read as a PUT /targets body / Then it is refused naming the body or field, not a 500
    with pytest.raises(MessageInvalid) as refused:
        json_body(body)
    assert [detail.path for detail in refused.value.details] == [path]
