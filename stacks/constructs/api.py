"""The REST API: `POST /messages` runs the ingest state machine synchronously.

API Gateway calls Step Functions' StartSyncExecution directly (no Lambda in between). The request
mapping builds the machine's input; the response mapping turns the machine's output, which is
already the HTTP answer `{"statusCode", "body"}`, into the response. StartSyncExecution answers
200 even for a failed run, so the mapping reads the run's `status`. No text from AWS reaches a
caller: every other outcome becomes Relay's own error body.

Every method requires the sender token authorizer (stacks/constructs/authentication.py) and the
API key it returns; the stage's usage plan throttles each sender's key.
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.shared.validation import ENVELOPE_ALLOWANCE_BYTES
from stacks.constructs.functions import LOG_RETENTION
from stacks.nag import acknowledge
from stacks.settings import RelaySettings, forwarded_base64_chars

STAGE_NAME = "v1"
JSON = "application/json"

SYSTEM_ERROR_MESSAGE = "Relay could not process the request; it is safe to retry with the same messageId."
THROTTLED_MESSAGE = "Too many requests; retry later with the same messageId."
UNAUTHORIZED_MESSAGE = "Send a valid API token as 'Authorization: Bearer <token>'."
FORBIDDEN_MESSAGE = "This sender may not call this route (it may be disabled)."
NO_API_KEY_MESSAGE = "This sender has no API key in this deployment's usage plan; ask an operator to set it up."

# Status codes POST /messages answers with (declared for the API's documentation and SDKs).
MESSAGE_STATUS_CODES = ("200", "202", "400", "401", "403", "409", "413", "429", "500")


def _error_json(code: str, message: str) -> str:
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
            _error_json("SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE),
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
            _error_json("THROTTLED", THROTTLED_MESSAGE),
            "#{else}",
            _error_json("SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE),
            "#{end}",
        ]
    )


# API Gateway's own answers (no integration reached), in Relay's error shape.
GATEWAY_RESPONSES: list[tuple[str, apigateway.ResponseType, str | None, str, str | None]] = [
    # id, type, status override, code, fixed message (None: API Gateway's own message)
    ("Default4xx", apigateway.ResponseType.DEFAULT_4_XX, None, "REQUEST_REJECTED", None),
    ("Default5xx", apigateway.ResponseType.DEFAULT_5_XX, None, "SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE),
    ("Throttled", apigateway.ResponseType.THROTTLED, "429", "THROTTLED", THROTTLED_MESSAGE),
    ("QuotaExceeded", apigateway.ResponseType.QUOTA_EXCEEDED, "429", "THROTTLED", THROTTLED_MESSAGE),
    (
        "RequestTooLarge",
        apigateway.ResponseType.REQUEST_TOO_LARGE,
        "413",
        "PAYLOAD_TOO_LARGE",
        "The request is too large.",
    ),
    (
        "UnsupportedMediaType",
        apigateway.ResponseType.UNSUPPORTED_MEDIA_TYPE,
        "415",
        "UNSUPPORTED_MEDIA_TYPE",
        "Send the message as JSON with Content-Type: application/json.",
    ),
    (
        "IntegrationTimeout",
        apigateway.ResponseType.INTEGRATION_TIMEOUT,
        "504",
        "SYSTEM_ERROR",
        SYSTEM_ERROR_MESSAGE,
    ),
    # Authentication (stacks/constructs/authentication.py): no or an unknown token, a disabled
    # sender, a sender without an API key in the usage plan.
    ("Unauthorized", apigateway.ResponseType.UNAUTHORIZED, "401", "UNAUTHORIZED", UNAUTHORIZED_MESSAGE),
    ("AccessDenied", apigateway.ResponseType.ACCESS_DENIED, "403", "FORBIDDEN", FORBIDDEN_MESSAGE),
    ("InvalidApiKey", apigateway.ResponseType.INVALID_API_KEY, "403", "FORBIDDEN", NO_API_KEY_MESSAGE),
    # API Gateway's answer for a path or method the API does not have.
    (
        "MissingAuthenticationToken",
        apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN,
        "404",
        "NOT_FOUND",
        "No such route.",
    ),
]

# Extra headers of some gateway responses (values are mapping expressions: literals in quotes).
GATEWAY_RESPONSE_HEADERS: dict[str, dict[str, str]] = {
    "Unauthorized": {"WWW-Authenticate": "'Bearer'"},
}


def gateway_response_template(code: str, message: str | None) -> str:
    if message is None:
        # $context.error.messageString is API Gateway's message, already quoted as a JSON string.
        return (
            '{"error":{"code":"' + code + '","message":$context.error.messageString,"requestId":"$context.requestId"}}'
        )
    return _error_json(code, message)


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


class Api(Construct):
    """REST API with `POST /messages`; later routes hang off `rest_api.root` / `messages`.

    Every method of the API, present and future, requires `authorizer` and an API key, which the
    authorizer supplies (the sender's key): that is what lets the usage plan throttle per sender.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        ingest_state_machine: sfn.IStateMachine,
        authorizer: apigateway.IAuthorizer,
        settings: RelaySettings,
    ) -> None:
        super().__init__(scope, construct_id)

        self.access_log_group = logs.LogGroup(
            self, "AccessLogs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
        )
        self.rest_api = apigateway.RestApi(
            self,
            "RestApi",
            # Also the ApiName dimension of its metrics (stacks/constructs/observability.py).
            rest_api_name=Stack.of(self).stack_name,
            description="Relay: accepts messages once and delivers them with retries",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            # The authorizer returns the sender's API key; callers never send one themselves.
            api_key_source_type=apigateway.ApiKeySourceType.AUTHORIZER,
            default_method_options=apigateway.MethodOptions(
                authorization_type=apigateway.AuthorizationType.CUSTOM,
                authorizer=authorizer,
                api_key_required=True,
            ),
            # Execution logging (ERROR level) needs the account's API Gateway CloudWatch role;
            # CDK creates it, and keeps it when the stack is deleted (other APIs may use it).
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                tracing_enabled=True,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                # Full request logging would write message bodies and credentials to the logs.
                data_trace_enabled=False,
                metrics_enabled=False,
                throttling_rate_limit=settings.api_throttling_rate_limit,
                throttling_burst_limit=settings.api_throttling_burst_limit,
            ),
        )
        # RestApi adds an "Endpoint" output of its own; RelayStack names its outputs itself.
        self.rest_api.node.try_remove_child("Endpoint")
        for response_id, response_type, status, code, message in GATEWAY_RESPONSES:
            self.rest_api.add_gateway_response(
                response_id,
                type=response_type,
                status_code=status,
                templates={JSON: gateway_response_template(code, message)},
                response_headers=GATEWAY_RESPONSE_HEADERS.get(response_id),
            )

        # The plan every sender's API key is in unless it has limits of its own (relay/admin.py
        # gives such a sender its own plan on the same stage). Its throttle applies per key.
        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            description="Relay senders: per-sender throttling (each sender's API key is in this plan)",
            throttle=apigateway.ThrottleSettings(
                rate_limit=settings.api_throttling_rate_limit,
                burst_limit=settings.api_throttling_burst_limit,
            ),
            api_stages=[apigateway.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)],
        )

        # API Gateway may start this one machine synchronously, and do nothing else.
        self.start_execution_role = iam.Role(
            self,
            "StartSyncExecutionRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="Relay API: start the ingest state machine synchronously",
        )
        ingest_state_machine.grant_start_sync_execution(self.start_execution_role)

        max_request_bytes = settings.max_body_bytes + ENVELOPE_ALLOWANCE_BYTES
        integration = apigateway.AwsIntegration(
            service="states",
            action="StartSyncExecution",
            integration_http_method="POST",
            options=apigateway.IntegrationOptions(
                credentials_role=self.start_execution_role,
                # Only JSON requests reach the machine; others get 415 (UnsupportedMediaType above).
                passthrough_behavior=apigateway.PassthroughBehavior.NEVER,
                request_templates={JSON: request_template(ingest_state_machine.state_machine_arn, max_request_bytes)},
                integration_responses=[
                    apigateway.IntegrationResponse(
                        status_code="200", response_templates={JSON: success_response_template()}
                    ),
                    apigateway.IntegrationResponse(
                        selection_pattern=r"4\d{2}",
                        status_code="500",
                        response_templates={JSON: client_error_response_template()},
                    ),
                    apigateway.IntegrationResponse(
                        selection_pattern=r"5\d{2}",
                        status_code="500",
                        response_templates={JSON: _error_json("SYSTEM_ERROR", SYSTEM_ERROR_MESSAGE)},
                    ),
                ],
            ),
        )
        self.messages = self.rest_api.root.add_resource("messages")
        self.post_message = self.messages.add_method(
            "POST",
            integration,
            method_responses=[apigateway.MethodResponse(status_code=code) for code in MESSAGE_STATUS_CODES],
        )

        acknowledge(
            self.rest_api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-level role API Gateway uses for execution logging; AWS documents this "
            "managed policy for it, and it only allows writing API Gateway's own log groups.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG2",
            "Requests are validated by the validate step against schemas/message.schema.json, so "
            "every error names its field in Relay's 400 VALIDATION_ERROR body; API Gateway's "
            "validator would answer in another shape and from another (draft-04) schema.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG3",
            "AWS WAF costs a fixed monthly fee plus a per-request fee; deployments that want it "
            "associate a web ACL with the stage. Throttling is set on the stage.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-COG4",
            "Every method requires Relay's Lambda token authorizer (per-sender bearer tokens, stored as "
            "hashes, rotated with a grace period); senders are machines, not Cognito user-pool users.",
        )

    @property
    def url(self) -> str:
        return self.rest_api.url

    @property
    def messages_url(self) -> str:
        return self.rest_api.url_for_path("/messages")
