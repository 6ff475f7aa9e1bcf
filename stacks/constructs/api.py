"""The REST API: `POST /messages` runs the ingest state machine synchronously, `POST /messages/batch`
the batch ingest machine (up to 100 messages in one run).

API Gateway calls Step Functions' StartSyncExecution directly (no Lambda in between). Its mapping
templates and gateway responses are written once in stacks/api_mapping.py, which `relay dev`
renders too.

Every method requires the sender token authorizer (stacks/constructs/authentication.py) and the
API key it returns; a usage plan throttles each sender's key (no stage-wide throttle unless
`relay.apiThrottlingRateLimit` is set). The web console's static files (GET /console...,
stacks/constructs/operations.py) are the exception: open to anyone, so the stage throttles them
on their own (CONSOLE_RATE_LIMIT, CONSOLE_BURST_LIMIT), whatever a caller sends.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.contract.console_routes import ASSET_PARAMETER, CONSOLE_PATH
from functions.domain.validation import ENVELOPE_ALLOWANCE_BYTES, MAX_BATCH_REQUEST_BYTES
from stacks.api_mapping import (
    ACCESS_LOG_FORMAT,
    API_KEY_REQUIRED,
    BATCH_STATUS_CODES,
    GATEWAY_RESPONSES,
    JSON,
    MESSAGE_STATUS_CODES,
    PASSTHROUGH_BEHAVIOR,
    STAGE_NAME,
    integration_responses,
    request_template,
)
from stacks.constructs.base.functions import LOG_RETENTION
from stacks.nag import acknowledge
from stacks.settings import RelaySettings
from stacks.settings_checks import CLOUD_WATCH_ROLE_CREATE

# Requests per second and burst for the console's files, all callers together: a page load is about
# a dozen small files, so a few people load it at once; a flood of anonymous requests stops here
# and cannot take the account's Lambda concurrency from the delivery functions.
CONSOLE_RATE_LIMIT = 10
CONSOLE_BURST_LIMIT = 40
CONSOLE_METHODS = (f"{CONSOLE_PATH}/GET", f"{CONSOLE_PATH}/{{{ASSET_PARAMETER}}}/GET")


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
        batch_state_machine: sfn.IStateMachine,
        authorizer: apigateway.IAuthorizer,
        settings: RelaySettings,
    ) -> None:
        super().__init__(scope, construct_id)
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
                api_key_required=API_KEY_REQUIRED,
            ),
            # The account's API Gateway CloudWatch role is one setting for the whole account and
            # region: the stack sets it only when asked to (and keeps the role when deleted, since
            # other APIs may use it by then).
            **self._cloud_watch_role(settings),
            deploy_options=self._stage_options(settings),
        )
        # RestApi adds an "Endpoint" output of its own; RelayStack names its outputs itself.
        self.rest_api.node.try_remove_child("Endpoint")
        for response in GATEWAY_RESPONSES:
            self.rest_api.add_gateway_response(
                response.response_id,
                type=apigateway.ResponseType.of(response.response_type),
                status_code=response.status_code,
                templates={JSON: response.template},
                response_headers=response.headers or None,
            )

        # The plan every sender's API key is in unless it has limits of its own (relay/admin.py
        # gives such a sender its own plan on the same stage). Its throttle applies per key.
        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            description="Relay senders: per-sender throttling (each sender's API key is in this plan)",
            throttle=apigateway.ThrottleSettings(
                rate_limit=settings.sender_rate_limit,
                burst_limit=settings.sender_burst_limit,
            ),
            api_stages=[apigateway.UsagePlanPerApiStage(api=self.rest_api, stage=self.rest_api.deployment_stage)],
        )
        self._add_post_messages(ingest_state_machine, batch_state_machine, settings)
        self._acknowledge_findings(settings)

    @staticmethod
    def _cloud_watch_role(settings: RelaySettings) -> dict[str, Any]:
        if settings.api_gateway_cloud_watch_role != CLOUD_WATCH_ROLE_CREATE:
            return {"cloud_watch_role": False}
        return {"cloud_watch_role": True, "cloud_watch_role_removal_policy": RemovalPolicy.RETAIN}

    def _stage_options(self, settings: RelaySettings) -> apigateway.StageOptions:
        """Tracing; logging when the account has its CloudWatch role; a stage throttle only when set.

        Without a stage throttle the account's API Gateway limit is the only one on all callers
        together; each sender is held to its usage plan's rate.
        """
        logging: dict[str, Any] = {"logging_level": apigateway.MethodLoggingLevel.OFF}
        self.access_log_group: logs.LogGroup | None = None
        if settings.api_logging:
            self.access_log_group = logs.LogGroup(
                self, "AccessLogs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
            )
            logging = {
                "access_log_destination": apigateway.LogGroupLogDestination(self.access_log_group),
                "access_log_format": apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                "logging_level": apigateway.MethodLoggingLevel.ERROR,
            }
        return apigateway.StageOptions(
            stage_name=STAGE_NAME,
            tracing_enabled=True,
            # Full request logging would write message bodies and credentials to the logs.
            data_trace_enabled=False,
            metrics_enabled=False,
            throttling_rate_limit=settings.api_throttling_rate_limit,
            throttling_burst_limit=settings.api_throttling_burst_limit,
            method_options=dict.fromkeys(CONSOLE_METHODS, self._console_options(logging["logging_level"])),
            **logging,
        )

    @staticmethod
    def _console_options(logging_level: apigateway.MethodLoggingLevel) -> apigateway.MethodDeploymentOptions:
        """The console's methods: the stage's logging (a method's settings replace the stage's whole),
        and their own throttle."""
        return apigateway.MethodDeploymentOptions(
            logging_level=logging_level,
            data_trace_enabled=False,
            metrics_enabled=False,
            throttling_rate_limit=CONSOLE_RATE_LIMIT,
            throttling_burst_limit=CONSOLE_BURST_LIMIT,
        )

    def _add_post_messages(
        self, ingest_state_machine: sfn.IStateMachine, batch_state_machine: sfn.IStateMachine, settings: RelaySettings
    ) -> None:
        # API Gateway may start these two machines synchronously, and do nothing else.
        self.start_execution_role = iam.Role(
            self,
            "StartSyncExecutionRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="Relay API: start the ingest state machines synchronously",
        )
        ingest_state_machine.grant_start_sync_execution(self.start_execution_role)
        batch_state_machine.grant_start_sync_execution(self.start_execution_role)

        self.messages = self.rest_api.root.add_resource("messages")
        self.post_message = self.messages.add_method(
            "POST",
            self._start_sync_execution(ingest_state_machine, settings.max_body_bytes + ENVELOPE_ALLOWANCE_BYTES),
            method_responses=[apigateway.MethodResponse(status_code=code) for code in MESSAGE_STATUS_CODES],
        )
        # One request, one run and one token of the sender's throttle, for up to 100 messages.
        self.batch = self.messages.add_resource("batch")
        self.post_batch = self.batch.add_method(
            "POST",
            self._start_sync_execution(batch_state_machine, MAX_BATCH_REQUEST_BYTES),
            method_responses=[apigateway.MethodResponse(status_code=code) for code in BATCH_STATUS_CODES],
        )

    def _start_sync_execution(self, state_machine: sfn.IStateMachine, max_request_bytes: int) -> apigateway.Integration:
        """StartSyncExecution of `state_machine` with the mapping templates of stacks/api_mapping.py."""
        return apigateway.AwsIntegration(
            service="states",
            action="StartSyncExecution",
            integration_http_method="POST",
            options=apigateway.IntegrationOptions(
                credentials_role=self.start_execution_role,
                # Only JSON requests reach the machine; others get 415 (UnsupportedMediaType).
                passthrough_behavior=apigateway.PassthroughBehavior(PASSTHROUGH_BEHAVIOR),
                request_templates={JSON: request_template(state_machine.state_machine_arn, max_request_bytes)},
                integration_responses=[
                    apigateway.IntegrationResponse(
                        status_code=response.status_code,
                        selection_pattern=response.selection_pattern,
                        response_templates=response.templates,
                    )
                    for response in integration_responses()
                ],
            ),
        )

    def _acknowledge_findings(self, settings: RelaySettings) -> None:
        if settings.api_gateway_cloud_watch_role == CLOUD_WATCH_ROLE_CREATE:
            acknowledge(
                self.rest_api,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
                "The account-level role API Gateway uses for execution logging; AWS documents this "
                "managed policy for it, and it only allows writing API Gateway's own log groups.",
            )
        if not settings.api_logging:
            for rule in ("AwsSolutions-APIG1", "AwsSolutions-APIG6"):
                acknowledge(
                    self.rest_api,
                    rule,
                    "Access and execution logging to CloudWatch need the account's API Gateway CloudWatch "
                    "role, which this deployment may neither assume nor set (relay.apiGatewayCloudWatchRole "
                    "is 'none'); set it to 'existing' or 'create' to turn both logs on.",
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
            "associate a web ACL with the stage. Each sender is throttled by its usage plan.",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-COG4",
            "Every method requires Relay's Lambda token authorizer (per-sender bearer tokens, stored as "
            "hashes, rotated with a grace period); senders are machines, not Cognito user-pool users. "
            "(The web console's static files are open; their methods say why.)",
        )

    @property
    def url(self) -> str:
        return self.rest_api.url

    @property
    def messages_url(self) -> str:
        return self.rest_api.url_for_path("/messages")
