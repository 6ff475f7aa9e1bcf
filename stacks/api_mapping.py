"""POST /messages (and /messages/batch) as API Gateway runs it: the mapping templates and gateway
responses, written once.

Why a module of its own: the stack deploys these texts (stacks/constructs/api.py) and `relay dev`
renders them with a Velocity engine (relay/local/apigateway/gateway.py), reading them from the synthesized
template when there is a current one. Keeping them free of CDK imports lets `relay dev` build the
same mapping without starting jsii when it has no template to read.

API Gateway calls Step Functions' StartSyncExecution directly (no Lambda in between). The request
mapping builds the machine's input; the response mapping turns the machine's output, which is
already the HTTP answer `{"statusCode", "body"}`, into the response. StartSyncExecution answers
200 even for a failed run, so the mapping reads the run's `status`. No text from AWS reaches a
caller: every other outcome becomes Relay's own error body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from functions.services.http_api.responses import SYSTEM_ERROR_MESSAGE
from stacks.settings import forwarded_base64_chars

STAGE_NAME = "v1"
JSON = "application/json"
# Only requests whose media type has a request template reach the machine; API Gateway answers
# the others with its UNSUPPORTED_MEDIA_TYPE gateway response (415).
PASSTHROUGH_BEHAVIOR = "NEVER"

# Every method requires an API key, which the authorizer supplies (the sender's, in its usage plan):
# a caller whose key is missing, disabled or in no plan gets the INVALID_API_KEY response (403).
API_KEY_REQUIRED = True

THROTTLED_MESSAGE = "Too many requests; retry later with the same messageId."
UNAUTHORIZED_MESSAGE = "Send a valid API token as 'Authorization: Bearer <token>'."
# Also the answer to a disabled API key: while API Gateway still serves a disabled sender's token
# from its authorizer cache, the sender's key (disabled with it) is what refuses the call.
FORBIDDEN_MESSAGE = "This sender may not call this route (it may be disabled)."
UNSUPPORTED_MEDIA_TYPE_MESSAGE = "Send the message as JSON with Content-Type: application/json."

# Status codes POST /messages answers with (declared for the API's documentation and SDKs).
MESSAGE_STATUS_CODES = ("200", "202", "400", "401", "403", "409", "413", "415", "429", "500", "504")
# ... and POST /messages/batch (each message's own answer is inside its 200).
BATCH_STATUS_CODES = ("200", "400", "401", "403", "413", "415", "429", "500", "504")


def error_json(code: str, message: str) -> str:
    """Relay's error body as a mapping template (only $context.requestId is filled in)."""
    return '{"error":{"code":"' + code + '","message":' + json.dumps(message) + ',"requestId":"$context.requestId"}}'


def request_template(state_machine_arn: str, max_request_bytes: int) -> str:
    """StartSyncExecution request: the ingest input `{requestId, senderId, bodyBase64}` as a string.

    - senderId is the sender the token authorizer authenticated (`$context.authorizer.senderId`;
      every method requires the authorizer), never a value from the request; validate checks the
      body's senderId against it. Anything outside the identifier alphabet becomes a value no
      message can carry, so it can never break out of the JSON string.
    - A body over the limit is cut to just over it: validate then answers 413 PAYLOAD_TOO_LARGE
      instead of Step Functions refusing an input over 256 KiB (which could only become a 500).
      The cut happens on the base64 text at a multiple of 4, so it stays valid base64.
    """
    limit = forwarded_base64_chars(max_request_bytes)
    return "".join(
        [
            '#set($senderId = "$!context.authorizer.senderId")',
            "#if(!$senderId.matches('[A-Za-z0-9._:-]{0,128}'))",
            '#set($senderId = "(invalid sender)")',
            "#{end}",
            "#set($bodyBase64 = $util.base64Encode($input.body))",
            f"#if($bodyBase64.length() > {limit})",
            f"#set($bodyBase64 = $bodyBase64.substring(0, {limit}))",
            "#{end}",
            '{"stateMachineArn":"',
            state_machine_arn,
            '","input":"{',
            '\\"requestId\\":\\"$context.requestId\\",',
            '\\"senderId\\":\\"$senderId\\",',
            '\\"bodyBase64\\":\\"$bodyBase64\\"',
            '}"}',
        ]
    )


def success_response_template() -> str:
    """A finished run: its output is the answer; any other run status is a SYSTEM_ERROR."""
    return "".join(
        [
            "#set($run = $input.path('$'))",
            '#if("$!run.status" == "SUCCEEDED")',
            "#set($answer = $util.parseJson($run.output))",
            "#set($context.responseOverride.status = $answer.statusCode)",
            "$answer.body",
            "#{else}",
            "#set($context.responseOverride.status = 500)",
            error_json("SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE),
            "#{end}",
        ]
    )


def client_error_response_template() -> str:
    """Step Functions refused to start the run (4xx): throttling becomes 429, the rest 500."""
    return "".join(
        [
            "#set($type = \"$!input.path('$.__type')\")",
            '#if($type.contains("Throttling") || $type.contains("ExecutionLimitExceeded"))',
            "#set($context.responseOverride.status = 429)",
            error_json("THROTTLED", THROTTLED_MESSAGE),
            "#{else}",
            error_json("SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE),
            "#{end}",
        ]
    )


@dataclass(frozen=True)
class IntegrationResponse:
    """One integration response: chosen when `selection_pattern` matches the integration's status."""

    status_code: str
    templates: dict[str, str]
    # A regular expression over the whole status code; None is the default response.
    selection_pattern: str | None = None


def integration_responses() -> list[IntegrationResponse]:
    return [
        IntegrationResponse("200", {JSON: success_response_template()}),
        IntegrationResponse("500", {JSON: client_error_response_template()}, r"4\d{2}"),
        IntegrationResponse("500", {JSON: error_json("SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE)}, r"5\d{2}"),
    ]


@dataclass(frozen=True)
class GatewayResponse:
    """API Gateway's own answer of one type (no integration reached), in Relay's error shape."""

    response_id: str
    response_type: str
    # None keeps API Gateway's status for the type.
    status_code: str | None
    code: str
    # None: API Gateway's own message ($context.error.messageString).
    message: str | None
    # Extra headers (values are mapping expressions: literals in quotes).
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def template(self) -> str:
        return gateway_response_template(self.code, self.message)


GATEWAY_RESPONSES: list[GatewayResponse] = [
    GatewayResponse("Default4xx", "DEFAULT_4XX", None, "REQUEST_REJECTED", None),
    GatewayResponse("Default5xx", "DEFAULT_5XX", None, "SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE),
    GatewayResponse("Throttled", "THROTTLED", "429", "THROTTLED", THROTTLED_MESSAGE),
    GatewayResponse("QuotaExceeded", "QUOTA_EXCEEDED", "429", "THROTTLED", THROTTLED_MESSAGE),
    GatewayResponse("RequestTooLarge", "REQUEST_TOO_LARGE", "413", "PAYLOAD_TOO_LARGE", "The request is too large."),
    GatewayResponse(
        "UnsupportedMediaType",
        "UNSUPPORTED_MEDIA_TYPE",
        "415",
        "UNSUPPORTED_MEDIA_TYPE",
        UNSUPPORTED_MEDIA_TYPE_MESSAGE,
    ),
    GatewayResponse("IntegrationTimeout", "INTEGRATION_TIMEOUT", "504", "SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE),
    # Authentication (stacks/constructs/authentication.py): no or an unknown token, a disabled
    # sender, a sender whose API key is disabled or missing from the usage plan.
    GatewayResponse(
        "Unauthorized",
        "UNAUTHORIZED",
        "401",
        "UNAUTHORIZED",
        UNAUTHORIZED_MESSAGE,
        headers={"WWW-Authenticate": "'Bearer'"},
    ),
    GatewayResponse("AccessDenied", "ACCESS_DENIED", "403", "FORBIDDEN", FORBIDDEN_MESSAGE),
    GatewayResponse("InvalidApiKey", "INVALID_API_KEY", "403", "FORBIDDEN", FORBIDDEN_MESSAGE),
    # API Gateway's answer for a path or method the API does not have.
    GatewayResponse("MissingAuthenticationToken", "MISSING_AUTHENTICATION_TOKEN", "404", "NOT_FOUND", "No such route."),
]


def gateway_response_template(code: str, message: str | None) -> str:
    if message is None:
        # $context.error.messageString is API Gateway's message, already quoted as a JSON string.
        return (
            '{"error":{"code":"' + code + '","message":$context.error.messageString,"requestId":"$context.requestId"}}'
        )
    return error_json(code, message)


ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "integrationError": "$context.integration.error",
    "errorType": "$context.error.responseType",
    "errorMessage": "$context.error.message",
    "senderId": "$context.authorizer.senderId",
    "xrayTraceId": "$context.xrayTraceId",
}
