"""An account that already has API Gateway's CloudWatch role: the stage logs, and the setting is left alone."""

from __future__ import annotations

import json

import pytest
from infra_support import CONSOLE_SETTINGS, EVERY_METHOD, Synthesized, method_settings, only, synthesize


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # Given cdk.json saying the account (and region) has its API Gateway CloudWatch role already
    # When the app is synthesized
    return synthesize(tmp_path_factory.mktemp("cdk.out"), context={"relay": {"apiGatewayCloudWatchRole": "existing"}})


def test_an_existing_cloudwatch_role_is_used_and_left_as_it_is(synth: Synthesized) -> None:
    # Then synthesis passes its checks
    assert synth.error is None
    # And the account's role setting is not part of the stack
    assert synth.of_type("AWS::ApiGateway::Account") == {}
    # And the stage logs errors (without request data) and access, as JSON lines kept one month
    _, stage = only(synth.of_type("AWS::ApiGateway::Stage"))
    # (every method: the console's files, throttled on their own, log as the others do)
    settings = method_settings(stage)
    assert set(settings) == {EVERY_METHOD, *CONSOLE_SETTINGS}
    assert {(setting["LoggingLevel"], setting["DataTraceEnabled"]) for setting in settings.values()} == {
        ("ERROR", False)
    }
    access = stage["Properties"]["AccessLogSetting"]
    assert json.loads(access["Format"])["status"] == "$context.status"
    log_group_id = access["DestinationArn"]["Fn::Join"][1][-1]["Ref"]
    assert synth.resources[log_group_id]["Properties"]["RetentionInDays"] == 30
