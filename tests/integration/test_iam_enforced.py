"""IAM enforced on the embedded AWS: handlers and state machines may do what their roles allow, no more."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.contract.settings_names import Setting
from relay.local import iam
from relay.local.emulator import REGION, LocalAws
from tests.conftest import ingest_input, make_message, template_without

KEY = {"pk": {"S": "MSG#sender-a#m-1"}, "sk": {"S": "MSG"}}


def test_a_handler_may_make_the_calls_its_role_grants_and_no_other(local_aws: LocalAws) -> None:
    # Given the dedup function's role from the template (it may GetItem on the table, nothing more)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    with iam.acting_as(local_aws.role_of("relay-dedup")):
        # When it reads a head, then tries to write one
        dynamodb.get_item(TableName=local_aws.table_name, Key=KEY)
        with pytest.raises(ClientError) as refused:
            dynamodb.put_item(TableName=local_aws.table_name, Item=KEY)
    # Then the read passes and the write fails with AWS's AccessDeniedException, naming action and resource
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert "dynamodb:PutItem" in error["Message"] and f"table/{local_aws.table_name}" in error["Message"]
    # And a call made outside any function (test setup) is not checked
    dynamodb.put_item(TableName=local_aws.table_name, Item=KEY)


def test_the_api_function_writes_messages_but_never_a_senders_record(local_aws: LocalAws) -> None:
    # Given the api function's role (its writes limited by dynamodb:LeadingKeys)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    sender = {"pk": {"S": "SENDER#sender-a"}, "sk": {"S": "SENDER"}}
    with iam.acting_as(local_aws.role_of("relay-api")):
        # When it writes a message's item, then a sender's record
        dynamodb.put_item(TableName=local_aws.table_name, Item=KEY)
        with pytest.raises(ClientError) as refused:
            dynamodb.put_item(TableName=local_aws.table_name, Item=sender)
    # Then the first passes and the second is refused as AWS would refuse it
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"


def test_threads_a_handler_starts_act_with_its_role(local_aws: LocalAws) -> None:
    # Given the dedup function's role, and a thread it starts
    outcome: list[Any] = []

    def write() -> None:
        try:
            boto3.client("dynamodb", region_name=REGION).put_item(TableName=local_aws.table_name, Item=KEY)
            outcome.append("written")
        except ClientError as error:
            outcome.append(error.response["Error"]["Code"])

    with iam.acting_as(local_aws.role_of("relay-dedup")):
        worker = threading.Thread(target=write)
        worker.start()
    worker.join()
    # Then the thread's call is held to the same role, as Lambda's credentials are per function
    assert outcome == ["AccessDeniedException"]


def test_a_machine_that_may_not_invoke_its_steps_answers_500(tmp_path: Path) -> None:
    # Given a template whose state machine roles lost lambda:InvokeFunction
    template = template_without("lambda:InvokeFunction", tmp_path)
    with LocalAws(template=template, time_scale=0.001, environment={Setting.REQUIRE_SENDER: "false"}) as local:
        # When a message runs through the ingest machine
        result = local.start_sync_execution("relay-ingest", ingest_input(make_message()))
    # Then its first task is refused (caught as on AWS) and the answer is Relay's 500 SYSTEM_ERROR
    answer = json.loads(result["output"])
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"]["code"] == "SYSTEM_ERROR"


def test_without_enforcement_the_same_template_runs(tmp_path: Path) -> None:
    # Given the same template with enforcement switched off (what moto alone would do)
    template = template_without("lambda:InvokeFunction", tmp_path)
    with LocalAws(
        template=template, time_scale=0.001, environment={Setting.REQUIRE_SENDER: "false"}, enforce_iam=False
    ) as local:
        result = local.start_sync_execution("relay-ingest", ingest_input(make_message()))
    # Then the message is accepted: the gap shows only because IAM is enforced
    assert json.loads(result["output"])["statusCode"] == 202
