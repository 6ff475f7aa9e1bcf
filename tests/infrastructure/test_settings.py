"""Deployment settings: cdk.json's `relay` object over the schema's `x-relay-limits` defaults."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from infra_support import EVERY_METHOD, Synthesized, method_settings, synthesize

from functions.contract.settings_names import Setting
from functions.domain.config import message_schema
from stacks.definitions import DELIVERY_LANES, longest_run, render_definition, retrier_waits, retry_schedule
from stacks.schedule import delivery_schedule
from stacks.settings import (
    INPUT_OVERHEAD_BYTES,
    MAX_BODY_BYTES_LIMIT,
    STEP_FUNCTIONS_PAYLOAD_LIMIT,
    RelaySettings,
    SettingsError,
    forwarded_base64_chars,
)

# An EXPRESS run is stopped at 300 s; the fast lane must fit in it with 30 s to spare.
EXPRESS_LIMIT_SECONDS = 300 - 30

OVERRIDES = {
    "ttlDays": 7,
    "maxBodyBytes": 32768,
    "maxHeaderCount": 10,
    "maxHeaderBytes": 4096,
    "maxFutureSkewSeconds": 60,
    "redriveAfterSeconds": 120,
    "apiThrottlingRateLimit": 20,
    "apiThrottlingBurstLimit": 40,
    "senderRateLimit": 7,
    "senderBurstLimit": 14,
    "apiGatewayCloudWatchRole": "create",
    "connectTimeoutSeconds": 5,
    "totalTimeoutSeconds": 20,
    "maxResponseBytes": 4096,
}


def test_defaults_are_the_schemas_limits() -> None:
    # Given the schema's documented limits
    limits = message_schema()["x-relay-limits"]
    # When no `relay` context is given
    settings = RelaySettings.from_mapping(None)
    # Then the settings are those limits
    assert settings.ttl_days == limits["ttlDays"]
    assert settings.max_body_bytes == limits["maxBodyBytes"]
    assert settings.max_header_count == limits["maxHeaderCount"]
    assert settings.max_header_bytes == limits["maxHeaderBytes"]
    assert settings.max_future_skew_seconds == limits["maxFutureSkewSeconds"]
    assert settings == RelaySettings.defaults()


def test_context_overrides_each_setting_and_reaches_the_function_environment() -> None:
    # Given every setting in the context
    # When the settings are read
    settings = RelaySettings.from_mapping(OVERRIDES)
    # Then each is taken, and the functions get them as RELAY_* variables
    assert settings.function_environment() == {
        Setting.TTL_DAYS: "7",
        Setting.MAX_BODY_BYTES: "32768",
        Setting.MAX_HEADER_COUNT: "10",
        Setting.MAX_HEADER_BYTES: "4096",
        Setting.MAX_FUTURE_SKEW_SECONDS: "60",
        Setting.REDRIVE_AFTER_SECONDS: "120",
        Setting.ALLOW_PRIVATE_TARGETS: "false",
        Setting.REQUIRE_SENDER: "true",
        # The bounds of a message's own retry budget and timeout (validated at ingest)
        Setting.MAX_ATTEMPTS: "12",
        Setting.TOTAL_TIMEOUT_SECONDS: "20",
    }
    assert (settings.api_throttling_rate_limit, settings.api_throttling_burst_limit) == (20, 40)
    assert (settings.sender_rate_limit, settings.sender_burst_limit) == (7, 14)
    assert settings.api_gateway_cloud_watch_role == "create"
    # And the delivery functions get the attempt's timeouts and response cap
    delivery = settings.delivery_environment()
    assert delivery[Setting.CONNECT_TIMEOUT_SECONDS] == "5"
    assert delivery[Setting.TOTAL_TIMEOUT_SECONDS] == "20"
    assert delivery[Setting.MAX_RESPONSE_BYTES] == "4096"
    assert settings.deliver_timeout_seconds == 30


def test_sections_other_capabilities_read_are_kept_as_given() -> None:
    # Given the delivery retry policies in the `relay` context (read by the delivery workflow)
    policy = {"fastLane": {"maxAttempts": 3}}
    # When the settings are read
    settings = RelaySettings.from_mapping({"delivery": policy})
    # Then the section is kept untouched, and does not count as an unknown setting
    assert settings.sections == {"delivery": policy}


def test_context_given_as_json_text_is_accepted() -> None:
    # Given `cdk synth -c relay='{"ttlDays": 3}'`, which arrives as a string
    # Then it is read like the object
    assert RelaySettings.from_mapping(json.dumps({"ttlDays": 3})).ttl_days == 3


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ttlDay": 3}, "unknown setting"),
        ({"ttlDays": 0}, "positive integer"),
        ({"ttlDays": -1}, "positive integer"),
        ({"ttlDays": "soon"}, "positive integer"),
        ({"ttlDays": True}, "positive integer"),
        ({"maxBodyBytes": 1.5}, "positive integer"),
        ({"maxBodyBytes": MAX_BODY_BYTES_LIMIT + 1}, "Step Functions"),
        ({"apiThrottlingRateLimit": 100, "apiThrottlingBurstLimit": 50}, "apiThrottlingBurstLimit"),
        ({"senderRateLimit": 100, "senderBurstLimit": 50}, "senderBurstLimit"),
        ({"senderRateLimit": 0}, "positive integer"),
        ({"apiGatewayCloudWatchRole": "yes"}, "one of none, existing, create"),
        ({"apiGatewayCloudWatchRole": True}, "one of none, existing, create"),
        ({"delivery": []}, "must be an object"),
        ({"connectTimeoutSeconds": 20, "totalTimeoutSeconds": 10}, "connectTimeoutSeconds"),
        ({"totalTimeoutSeconds": 121}, "totalTimeoutSeconds"),
        ({"maxResponseBytes": 2_000_000}, "maxResponseBytes"),
        ({"dispatcherMaxConcurrency": 1}, "dispatcherMaxConcurrency is 1; Lambda's SQS event source accepts 2 to 1000"),
        ({"dispatcherMaxConcurrency": 1001}, "dispatcherMaxConcurrency"),
        ({"dispatcherMaxConcurrency": "many"}, "positive integer"),
        ({"delivery": {"fast": {}}}, "unknown setting"),
        ({"delivery": {"fastLane": []}}, "must be an object"),
        ({"delivery": {"fastLane": {"retries": 3}}}, "unknown setting"),
        ({"delivery": {"fastLane": {"backoffRate": 0.5}}}, "backoffRate"),
        ({"delivery": {"fastLane": {"maxAttempts": 2.5}}}, "maxAttempts"),
        ({"delivery": {"fastLane": {"maxAttempts": True}}}, "maxAttempts"),
        ({"delivery": {"slowLane": {"jitterStrategy": "HALF"}}}, "jitterStrategy"),
        ({"delivery": {"fastLane": {"initialWaitSeconds": 10}}}, "slow lane only"),
        # Ten attempts of up to 25 s each cannot fit one EXPRESS run (300 s).
        ({"delivery": {"fastLane": {"maxAttempts": 9}}}, "EXPRESS"),
        ({"delivery": {"slowLane": {"maxAttempts": 1000, "maxDelaySeconds": 86400}}}, "STANDARD"),
        ({"delivery": {"slowLane": {"maxAttempts": 1001}}}, "maxAttempts"),
        ("[1, 2]", "must be an object"),
        ("{not json", "not a JSON object"),
        ({"circuitBreaker": []}, "must be an object"),
        ({"circuitBreaker": {"threshold": 5}}, "unknown setting"),
        ({"circuitBreaker": {"failureThreshold": 0}}, "failureThreshold"),
        ({"circuitBreaker": {"failureThreshold": True}}, "failureThreshold"),
        ({"circuitBreaker": {"probeAfterSeconds": 1.5}}, "probeAfterSeconds"),
        ({"circuitBreaker": {"probeAfterSeconds": 600, "maxProbeAfterSeconds": 60}}, "maxProbeAfterSeconds"),
    ],
)
def test_invalid_settings_fail_synthesis_with_a_clear_message(raw: object, message: str) -> None:
    # Given a `relay` context with a mistake
    # Then reading it fails and says what is wrong
    with pytest.raises(SettingsError, match=message):
        RelaySettings.from_mapping(raw)


def test_the_slow_lane_lease_covers_its_whole_retry_horizon() -> None:
    # Given the slow lane's default policy (delivery_slow.asl.json) and the default attempt timeout
    settings = RelaySettings.defaults()
    schedule = retry_schedule("delivery_slow.asl.json", None)
    throttled = retry_schedule("delivery_slow.asl.json", None, "DeliveryThrottled")
    # Then the lease is the longest the lane can take: every wait at its cap, every attempt timing out,
    # every wait for a target at its limit (DeliveryThrottled, 1 s a step), plus an hour, plus a
    # Retry-After wait at its cap (an hour) for each of the run's 12 attempts
    assert (
        settings.slow_lane_lease_seconds
        == math.ceil(schedule.max_horizon_seconds + sum(throttled.waits))
        + schedule.attempts * (15 + 10)
        + throttled.attempts
        + 3600
        + 12 * 3600
    )
    assert settings.delivery_environment()[Setting.SLOW_LANE_LEASE_SECONDS] == str(settings.slow_lane_lease_seconds)


@pytest.mark.parametrize(
    ("first_attempt", "dispatcher_timeout", "visibility", "fast_lane_lease"),
    [("inline", 15 + 10 + 10, 6 * 35, 360 + 35), ("stateMachine", 10, 60, 360)],
)
def test_the_first_attempt_setting_sizes_the_dispatcher_queue_and_lease(
    first_attempt: str, dispatcher_timeout: int, visibility: int, fast_lane_lease: int
) -> None:
    # Given delivery.firstAttempt
    settings = RelaySettings.from_mapping({"delivery": {"firstAttempt": first_attempt}})
    # Then the dispatcher may make a batch's attempts (in parallel) and its bookkeeping in time
    assert settings.dispatcher_timeout_seconds == dispatcher_timeout
    # And the queue does not show a message again while its batch runs (six timeouts, as Lambda asks)
    assert settings.delivery_queue_visibility_seconds == visibility
    # And the lease covers the inline attempt and the fast-lane run after it
    assert settings.delivery_environment()[Setting.FAST_LANE_LEASE_SECONDS] == str(fast_lane_lease)
    assert settings.dispatcher_environment() == {Setting.FIRST_ATTEMPT: first_attempt}


def test_the_circuit_breaker_settings_reach_the_delivery_functions() -> None:
    # Given cdk.json's relay.circuitBreaker (or none)
    given = RelaySettings.from_mapping({"circuitBreaker": {"failureThreshold": 5, "probeAfterSeconds": 30}})
    # Then the delivery functions and the reconciler get them as variables; the defaults otherwise
    assert {
        name: value for name, value in given.delivery_environment().items() if name.startswith("RELAY_BREAKER_")
    } == {
        Setting.BREAKER_FAILURE_THRESHOLD: "5",
        Setting.BREAKER_PROBE_AFTER_SECONDS: "30",
        Setting.BREAKER_MAX_PROBE_AFTER_SECONDS: "3600",
    }
    defaults = RelaySettings.defaults().delivery_environment()
    assert defaults[Setting.BREAKER_FAILURE_THRESHOLD] == "20"
    assert defaults[Setting.BREAKER_PROBE_AFTER_SECONDS] == "60"


def test_an_unknown_first_attempt_is_refused() -> None:
    with pytest.raises(SettingsError, match="firstAttempt must be one of inline, stateMachine"):
        RelaySettings.from_mapping({"delivery": {"firstAttempt": "lambda"}})


def test_the_slow_lane_lease_follows_the_policy_and_the_timeout() -> None:
    # Given a shorter slow lane and a longer attempt
    policy = {"intervalSeconds": 30, "maxAttempts": 4, "backoffRate": 2, "initialWaitSeconds": 60}
    settings = RelaySettings.from_mapping({"totalTimeoutSeconds": 20, "delivery": {"slowLane": policy}})
    # Then the lease is 60 s of initial wait, waits of 30+60+120+240 s, 5 attempts of 30 s, the
    # throttled waits (the lane's own DeliveryThrottled retrier, unchanged), the margin and a
    # Retry-After wait at its cap for each attempt
    throttled = retry_schedule("delivery_slow.asl.json", None, "DeliveryThrottled")
    assert settings.slow_lane_lease_seconds == (
        math.ceil(60 + 450 + sum(throttled.waits)) + 5 * 30 + throttled.attempts + 3600 + settings.max_attempts * 3600
    )


def test_the_largest_body_still_fits_a_step_functions_input() -> None:
    # Given the largest maxBodyBytes the settings accept
    settings = RelaySettings.from_mapping({"maxBodyBytes": MAX_BODY_BYTES_LIMIT})
    from functions.domain.validation import ENVELOPE_ALLOWANCE_BYTES

    # Then the longest body the API forwards (base64) plus the input's JSON fits in 256 KiB
    longest = forwarded_base64_chars(settings.max_body_bytes + ENVELOPE_ALLOWANCE_BYTES)
    assert longest + INPUT_OVERHEAD_BYTES <= STEP_FUNCTIONS_PAYLOAD_LIMIT
    # And one byte more would not
    one_more = forwarded_base64_chars(settings.max_body_bytes + 1 + ENVELOPE_ALLOWANCE_BYTES)
    assert one_more + INPUT_OVERHEAD_BYTES > STEP_FUNCTIONS_PAYLOAD_LIMIT


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # Given cdk.json context overridden like `cdk synth -c relay=...`
    # When the app is synthesized once for this module
    return synthesize(tmp_path_factory.mktemp("cdk.out"), context={"relay": OVERRIDES})


def test_overrides_reach_every_function_and_the_stage(synth: Synthesized) -> None:
    # Given the synthesized functions and stage
    functions = synth.of_type("AWS::Lambda::Function").values()
    (stage,) = synth.of_type("AWS::ApiGateway::Stage").values()
    # Then every function carries the overridden limits
    for function in functions:
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables[Setting.TTL_DAYS] == "7"
        assert variables[Setting.MAX_BODY_BYTES] == "32768"
        assert variables[Setting.REDRIVE_AFTER_SECONDS] == "120"
    # And the stage caps all callers together with the limits set for it
    every_method = method_settings(stage)[EVERY_METHOD]
    assert (every_method["ThrottlingRateLimit"], every_method["ThrottlingBurstLimit"]) == (20, 40)
    assert synth.error is None


def test_an_opted_in_cloudwatch_role_is_created_set_for_the_account_and_used(synth: Synthesized) -> None:
    # Given `apiGatewayCloudWatchRole: create`
    (account,) = synth.of_type("AWS::ApiGateway::Account").values()
    (stage,) = synth.of_type("AWS::ApiGateway::Stage").values()
    # Then the stack sets the account's API Gateway CloudWatch role to a role of its own, kept on delete
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    assert synth.resources[role_id]["DeletionPolicy"] == "Retain"
    # And the stage logs errors (without request data) and access, as JSON lines
    for setting in method_settings(stage).values():  # every method, the console's files too
        assert (setting["LoggingLevel"], setting["DataTraceEnabled"]) == ("ERROR", False)
    assert json.loads(stage["Properties"]["AccessLogSetting"]["Format"])["requestId"] == "$context.requestId"


def test_relay_dev_reads_the_overridden_api_from_the_template_as_from_the_functions(synth: Synthesized) -> None:
    from relay.local.apigateway.api_definition import Throttle, definition_from_functions, definition_from_template

    # Given the template synthesized with the overrides, and the functions given the same overrides
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:relay-ingest"
    from_template = definition_from_template(synth.template, arn, source="template")
    from_functions = definition_from_functions(arn, relay_context=OVERRIDES)
    # Then relay dev applies the same stage cap, default plan and mappings either way
    assert (from_template.stage_throttle, from_template.sender_throttle) == (Throttle(20, 40), Throttle(7, 14))
    assert replace(from_template, source="", credentials_role=None) == replace(from_functions, source="")


def test_overrides_reach_the_usage_plan_and_the_delivery_functions(synth: Synthesized) -> None:
    from infra_support import function_by_step, step_environment

    # Given the usage plan and the delivery functions
    (plan,) = synth.of_type("AWS::ApiGateway::UsagePlan").values()
    # Then each sender's key is throttled on its own with the overridden sender limits
    assert plan["Properties"]["Throttle"] == {"RateLimit": 7, "BurstLimit": 14}
    # And every delivery step uses the overridden attempt settings
    for step in ("dispatcher", "deliver", "finalize", "handoff", "reconciler"):
        variables = step_environment(synth, step)
        assert variables[Setting.CONNECT_TIMEOUT_SECONDS] == "5"
        assert variables[Setting.TOTAL_TIMEOUT_SECONDS] == "20"
        assert variables[Setting.MAX_RESPONSE_BYTES] == "4096"
    # And the deliver function may run the longer attempt plus its own bookkeeping
    assert function_by_step(synth, "deliver")[1]["Properties"]["Timeout"] == 30


# -- the fast lane within an EXPRESS run (issue 16, item 6) ------------------------------------------


def test_the_default_fast_lane_fits_an_express_run_when_everything_goes_wrong() -> None:
    # Given the default settings (15 s attempts: the deliver function's timeout is 25 s; finalize 10 s)
    settings = RelaySettings.from_mapping({})
    # When the fast lane's longest run is read from its definition
    seconds, steps = settings.fast_lane_run()
    # Then it is the inline attempt's Retry-After wait (at most the first retry's 1 s), every try of
    # Deliver timing out (1 + 2 DeliveryRetryable + 2 DeliveryThrottled + 1 Lambda.* retries) with every
    # wait in full (1 + 4, 1 + 1.5, 1 s), then MarkFailed likewise (1 + 1 Lambda.* + 2 storage retries;
    # MoveToSlowLane takes as long)
    assert [step.name for step in steps] == ["WaitRetryAfter", "Deliver", "MarkFailed"]
    assert seconds == 1 + (6 * 25 + 1 + 4 + 1 + 1.5 + 1) + (4 * 10 + 1 + 2 + 4)
    # And that fits an EXPRESS run with its margin
    assert seconds <= EXPRESS_LIMIT_SECONDS


def _fast_lane_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(render_definition(DELIVERY_LANES["fastLane"], None, None))
    return document


def _timeouts(settings: RelaySettings) -> Any:
    timeouts = settings.lane_function_timeouts()
    return lambda name, state: timeouts[state["Parameters"]["FunctionName"][2:-1]]


@pytest.mark.parametrize(
    ("state", "index"),
    [
        (name, index)
        for name, state in _fast_lane_document()["States"].items()
        for index, _ in enumerate(state.get("Retry", []))
    ],
)
def test_every_retrier_of_every_fast_lane_state_is_counted(state: str, index: int) -> None:
    # Given the fast lane as deployed, and the same definition with one of its retriers allowed one
    # retry more
    settings = RelaySettings.defaults()
    document = _fast_lane_document()
    retrier = document["States"][state]["Retry"][index]
    before, _ = longest_run(document, _timeouts(settings), {"$.waitSeconds": settings.fast_lane_retry_after_cap})
    retrier["MaxAttempts"] = int(retrier.get("MaxAttempts", 3)) + 1
    after, _ = longest_run(document, _timeouts(settings), {"$.waitSeconds": settings.fast_lane_retry_after_cap})
    # Then the bound grows by one more try at the state's function timeout and that retry's wait
    each = _timeouts(settings)(state, document["States"][state])
    assert after == before + each + retrier_waits(retrier)[-1]


def test_a_retrier_added_to_the_fast_lane_counts_against_the_express_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a fast lane whose MoveToSlowLane step also retries any error ten times (a change to the file)
    document = _fast_lane_document()
    document["States"]["MoveToSlowLane"]["Retry"].append({"ErrorEquals": ["States.ALL"], "MaxAttempts": 10})
    monkeypatch.setattr("stacks.settings.render_definition", lambda *args: json.dumps(document))
    # When the settings are read
    # Then synth refuses it, naming the step and what may be lowered
    with pytest.raises(SettingsError, match=r"MoveToSlowLane .*14 tries.*totalTimeoutSeconds.*delivery\.fastLane"):
        RelaySettings.from_mapping({})


@pytest.mark.parametrize(
    "raw",
    [
        # A longer attempt: each of Deliver's 6 tries may last 26 + 10 s
        {"totalTimeoutSeconds": 26},
        # More fast-lane retries: 5 more tries of 25 s
        {"delivery": {"fastLane": {"maxAttempts": 7}}},
        # No fast-lane retry: the inline attempt's Retry-After (up to the slow lane's first 300 s
        # wait) would be waited in the fast lane
        {"delivery": {"fastLane": {"maxAttempts": 0}}},
    ],
)
def test_a_fast_lane_that_may_outlive_an_express_run_is_refused_naming_the_settings(raw: dict[str, Any]) -> None:
    # Given settings under which the fast lane may run past 270 s
    # When they are read (cdk synth)
    # Then they are refused with the worst case, the limit and the settings to lower
    with pytest.raises(SettingsError) as refused:
        RelaySettings.from_mapping(raw)
    message = str(refused.value)
    assert "EXPRESS" in message and "270 s" in message
    assert "relay.totalTimeoutSeconds" in message and "relay.delivery.fastLane" in message


@pytest.mark.parametrize(
    "raw",
    [
        {"totalTimeoutSeconds": 25},
        {"delivery": {"fastLane": {"maxAttempts": 3}}},
        # Without an inline attempt no run is handed a Retry-After wait
        {"delivery": {"firstAttempt": "stateMachine", "fastLane": {"maxAttempts": 0}}},
    ],
)
def test_fast_lanes_that_fit_an_express_run_are_accepted(raw: dict[str, Any]) -> None:
    # Given settings whose fast lane ends within 270 s in the worst case
    settings = RelaySettings.from_mapping(raw)
    # Then they are accepted
    assert settings.fast_lane_run_seconds <= EXPRESS_LIMIT_SECONDS


# -- ttlDays covers the retry horizon (issue 16, item 5) ----------------------------------------------


def test_the_retry_horizon_is_the_schedules_with_every_attempt_timing_out() -> None:
    # Given the default settings (12 attempts over 26 h 10 min at most, 25 s per attempt at most)
    settings = RelaySettings.defaults()
    schedule = delivery_schedule()
    # Then the retry horizon is the schedule's longest plus every attempt at the deliver timeout
    assert settings.retry_horizon_seconds == math.ceil(schedule.horizon.max_seconds) + 12 * 25
    # And the default retention (30 days) outlasts it by far
    assert settings.ttl_days * 86_400 > settings.retry_horizon_seconds


def test_a_ttl_shorter_than_the_retry_horizon_is_refused_naming_ttl_days() -> None:
    # Given a one-day retention with the default schedule (about 26 h of retries)
    # When the settings are read
    # Then synth refuses them, naming ttlDays and the smallest value that fits
    with pytest.raises(SettingsError, match=r"relay\.ttlDays is 1, shorter than the retry horizon.*at least 2"):
        RelaySettings.from_mapping({"ttlDays": 1})


@pytest.mark.parametrize(
    "raw",
    [
        {"ttlDays": 2},
        # A slow lane that gives up within hours fits a day's retention
        {"ttlDays": 1, "delivery": {"slowLane": {"maxAttempts": 3}}},
    ],
)
def test_a_ttl_that_outlasts_the_retry_horizon_is_accepted(raw: dict[str, Any]) -> None:
    # Given a retention at least as long as the retries may go on
    settings = RelaySettings.from_mapping(raw)
    # Then it is accepted
    assert settings.ttl_days * 86_400 >= settings.retry_horizon_seconds


def test_the_readme_states_the_default_fast_lane_bound_and_retry_horizon() -> None:
    # Given the README's account of the fast lane's bound and of ttlDays
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    settings = RelaySettings.defaults()
    # Then its figures are the settings' own
    assert f"the bound is {settings.fast_lane_run_seconds:g} s" in readme
    assert f"{settings.retry_horizon_seconds:,} s with the defaults".replace(",", " ") in readme
