"""API Gateway's mapping-template variables in `relay dev`, as AWS's mapping template reference has them."""

from __future__ import annotations

import base64
import json

import pytest

from relay.local.apigateway.velocity import MappingError, render, substitute
from stacks.api_mapping import (
    SYSTEM_ERROR_MESSAGE,
    THROTTLED_MESSAGE,
    client_error_response_template,
    request_template,
    success_response_template,
)

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:relay-ingest"
CONTEXT = {"requestId": "req-1", "authorizer": {"senderId": "shop", "principalId": "shop"}}
PARAMS = {"path": {}, "querystring": {"q": "1"}, "header": {"Content-Type": "application/json", "X-Id": "h"}}


def text(template: str, body: str = "", context: dict[str, object] | None = None) -> str:
    return render(template, body=body, params=PARAMS, context=context or CONTEXT).text


# -- $input -------------------------------------------------------------------------------------------


def test_input_body_json_and_path() -> None:
    # Given a JSON payload
    body = '{"a": {"b": [1, 2]}, "s": "x"}'
    # Then $input.body is the payload, $input.json gives JSON text, $input.path objects to walk
    assert text("$input.body", body) == body
    assert text("$input.json('$.a')", body) == '{"b":[1,2]}'
    assert text("$input.path('$.a.b').size()", body) == "2"
    assert text("$input.path('$').s", body) == "x"
    assert text("$input.path('$.missing')", body) == ""


def test_input_params_all_and_by_name_in_path_querystring_header_order() -> None:
    assert text("$input.params('q')") == "1"
    assert text("$input.params('X-Id')") == "h"
    assert text("$input.params().querystring.q") == "1"
    assert text("$input.params('nope')") == ""


# -- $util --------------------------------------------------------------------------------------------


def test_util_escape_javascript_uses_javascript_string_rules() -> None:
    # Then quotes (single ones too), backslashes, slashes and control characters are escaped,
    # and non-ASCII characters become \\u escapes (UTF-16 units, as in Java)
    assert text("$util.escapeJavaScript('a\"b')") == 'a\\"b'
    context = {**CONTEXT, "value": "it's a/b\\c\n\té😀"}
    assert (
        text("$util.escapeJavaScript($context.value)", context=context)
        == "it\\'s a\\/b\\\\c\\n\\t\\u00E9\\uD83D\\uDE00"
    )


def test_util_base64_round_trip_and_url_encoding() -> None:
    assert text("$util.base64Encode('héllo')") == base64.b64encode("héllo".encode()).decode()
    assert text("$util.base64Decode('aMOpbGxv')") == "héllo"
    assert text("$util.urlEncode('a b&c=d~*')") == "a+b%26c%3Dd%7E*"
    assert text("$util.urlDecode('a+b%26c')") == "a b&c"


def test_util_parse_json_gives_objects() -> None:
    template = "#set($o = $util.parseJson($input.body))$o.n $o.list.get(1) $o.inner.k"
    assert text(template, '{"n": 7, "list": ["x", "y"], "inner": {"k": true}}') == "7 y true"


# -- $context -----------------------------------------------------------------------------------------


def test_response_override_status_and_headers_are_read_back() -> None:
    # When a template sets $context.responseOverride
    rendered = render(
        "#set($context.responseOverride.status = 418)#set($context.responseOverride.header.X-A = 'v')ok",
        body="",
        params=PARAMS,
        context=CONTEXT,
    )
    # Then the status and header are what the gateway answers with
    assert (rendered.text, rendered.status, rendered.headers) == ("ok", 418, {"X-A": "v"})


def test_a_template_that_does_not_parse_is_a_mapping_error() -> None:
    with pytest.raises(MappingError):
        text("#if($x")


def test_gateway_response_templates_only_substitute_context() -> None:
    # Given a gateway response template (API Gateway does not run Velocity on these)
    template = '{"m":$context.error.messageString,"r":"$context.requestId","x":"#if(1)$context.nope#end"}'
    # Then only $context variables are replaced
    assert substitute(template, {"requestId": "r-9", "error": {"messageString": '"No"'}}) == (
        '{"m":"No","r":"r-9","x":"#if(1)#end"}'
    )


# -- the stack's own templates ------------------------------------------------------------------------


def test_request_template_builds_the_ingest_input_from_the_authorizer_and_the_body() -> None:
    # Given a request body and the authorizer's senderId
    body = '{"messageId": "m-1", "body": "é"}'
    # When the request template renders
    call = json.loads(text(request_template(ARN, 1000), body))
    # Then StartSyncExecution gets the machine and an input with the request id, sender and body
    assert call["stateMachineArn"] == ARN
    assert json.loads(call["input"]) == {
        "requestId": "req-1",
        "senderId": "shop",
        "bodyBase64": base64.b64encode(body.encode()).decode(),
    }


def test_request_template_never_lets_a_sender_id_break_out_and_cuts_oversized_bodies() -> None:
    # Given a senderId outside the identifier alphabet, and a body over the limit
    context = {"requestId": "r", "authorizer": {"senderId": 'x","senderId":"y'}}
    call = json.loads(text(request_template(ARN, 10), "z" * 100, context))
    execution_input = json.loads(call["input"])
    # Then the sender is a value no message carries, and the body is cut just over the limit
    assert execution_input["senderId"] == "(invalid sender)"
    assert len(base64.b64decode(execution_input["bodyBase64"])) == 12


def test_success_template_answers_with_the_runs_output_or_a_system_error() -> None:
    output = {"statusCode": 202, "body": json.dumps({"status": "PENDING"})}
    succeeded = render(
        success_response_template(),
        body=json.dumps({"status": "SUCCEEDED", "output": json.dumps(output)}),
        params=PARAMS,
        context=CONTEXT,
    )
    assert (succeeded.status, json.loads(succeeded.text)) == (202, {"status": "PENDING"})
    failed = render(success_response_template(), body='{"status": "FAILED"}', params=PARAMS, context=CONTEXT)
    assert failed.status == 500
    assert json.loads(failed.text)["error"] == {
        "code": "SYSTEM_ERROR",
        "message": SYSTEM_ERROR_MESSAGE,
        "requestId": "req-1",
    }


@pytest.mark.parametrize(
    ("aws_type", "status", "code"),
    [("ThrottlingException", 429, "THROTTLED"), ("AccessDeniedException", None, "SYSTEM_ERROR")],
)
def test_client_error_template_maps_throttling_to_429_and_hides_aws_text(
    aws_type: str, status: int | None, code: str
) -> None:
    body = json.dumps({"__type": aws_type, "message": "internal AWS detail"})
    rendered = render(client_error_response_template(), body=body, params=PARAMS, context=CONTEXT)
    assert rendered.status == status
    error = json.loads(rendered.text)["error"]
    assert error["code"] == code and "AWS detail" not in rendered.text
    if status == 429:
        assert error["message"] == THROTTLED_MESSAGE
