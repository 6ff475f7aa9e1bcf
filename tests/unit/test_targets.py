"""Targets: origin normalisation, the PUT /targets schema, settings (the flow math: test_flow.py)."""

from __future__ import annotations

import pytest

from functions.contract.settings_names import Setting
from functions.domain.exceptions import MessageInvalid
from functions.domain.flow import json_body, validate_target
from functions.domain.web.origins import origin_of, origin_of_id, parse_origin, target_id
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
        ("HTTP://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("http://Example.com:80/", "http://example.com"),
        ("https://[::1]:443/a", "https://[::1]"),
        ("https://[::1]:8443/p", "https://[::1]:8443"),
    ],
)
def test_origin_of_normalises_scheme_host_and_port(url: str, origin: str) -> None:
    # Given a target URL / When its origin is taken / Then it is scheme://host[:port], lowercase, no default port
    assert origin_of(url) == origin


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com", "example.com", "not a url", "https://", "http://example.com:99999", f"https://{'a' * 254}"],
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
