"""What API Gateway runs in front of the stack, as `relay dev` reads it from the synthesized template.

Why: the deployed API and the local one must be one description. `load_api_definition` reads the
POST /messages integration (request templates, passthrough behaviour, integration responses and the
role it calls Step Functions with), POST /messages/batch's request templates, the gateway responses
and the throttles (stage method settings, the default usage plan) from the template relay dev runs
(relay/local/synth.py keeps cdk.out's current), resolving its `Ref`/`Fn::Join` to the local ARNs.
`definition_from_functions` builds the same definition from stacks/api_mapping.py and cdk.json, the
very functions and settings the stack is synthesized from, for unit tests that need no synthesis
(tests/infrastructure checks that both give the same definition).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacks.api_mapping import (
    API_KEY_REQUIRED,
    GATEWAY_RESPONSES,
    JSON,
    PASSTHROUGH_BEHAVIOR,
    integration_responses,
    request_template,
)

FROM_FUNCTIONS = "stacks/api_mapping.py and cdk.json"


@dataclass(frozen=True)
class Throttle:
    """A token bucket's shape: `rate` requests per second, at most `burst` at once."""

    rate: float
    burst: int


@dataclass(frozen=True)
class IntegrationResponseRule:
    status_code: str
    templates: dict[str, str]
    selection_pattern: str | None = None


@dataclass(frozen=True)
class GatewayResponseRule:
    """A gateway response as deployed: status (None: the type's own), templates, extra headers."""

    status_code: str | None
    templates: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiDefinition:
    """POST /messages (and /messages/batch) and the front door every route shares."""

    request_templates: dict[str, str]
    passthrough_behavior: str
    integration_responses: tuple[IntegrationResponseRule, ...]
    gateway_responses: dict[str, GatewayResponseRule]
    # The default usage plan: each sender's own throttle unless the sender has limits of its own.
    sender_throttle: Throttle
    # A throttle on all callers together (stage method settings), if the deployment sets one.
    stage_throttle: Throttle | None
    # The role API Gateway calls StartSyncExecution with (a logical id of the template, if known).
    credentials_role: str | None
    # Where this definition was read from (shown by `relay dev`).
    source: str
    # POST /messages/batch: its request templates (its integration responses and role are the ones
    # above, as the stack deploys them).
    batch_request_templates: dict[str, str] = field(default_factory=dict)
    # Every method requires an API key (the authorizer's): one missing, disabled or in no usage plan
    # is refused with INVALID_API_KEY.
    api_key_required: bool = False


def load_api_definition(
    state_machine_arn: str, template_path: Path, batch_state_machine_arn: str | None = None
) -> ApiDefinition:
    """The API part of the template at `template_path`, resolved against the local ingest ARNs."""
    template = json.loads(template_path.read_text(encoding="utf-8"))
    return definition_from_template(template, state_machine_arn, str(template_path), batch_state_machine_arn)


def definition_from_functions(
    state_machine_arn: str, relay_context: dict[str, Any] | None = None, batch_state_machine_arn: str | None = None
) -> ApiDefinition:
    """The definition the stack is synthesized from, with cdk.json's settings (or `relay_context`)."""
    from functions.domain.validation import ENVELOPE_ALLOWANCE_BYTES, MAX_BATCH_REQUEST_BYTES
    from stacks.project_config import relay_context as project_context
    from stacks.settings import RelaySettings

    settings = RelaySettings.from_mapping(project_context() if relay_context is None else relay_context)
    stage = None
    if settings.api_throttling_rate_limit is not None or settings.api_throttling_burst_limit is not None:
        stage = _throttle(settings.api_throttling_rate_limit, settings.api_throttling_burst_limit)
    return ApiDefinition(
        request_templates={
            JSON: request_template(state_machine_arn, settings.max_body_bytes + ENVELOPE_ALLOWANCE_BYTES)
        },
        passthrough_behavior=PASSTHROUGH_BEHAVIOR,
        integration_responses=tuple(
            IntegrationResponseRule(rule.status_code, rule.templates, rule.selection_pattern)
            for rule in integration_responses()
        ),
        gateway_responses={
            response.response_type: GatewayResponseRule(
                response.status_code,
                {JSON: response.template},
                {name: value.strip("'") for name, value in response.headers.items()},
            )
            for response in GATEWAY_RESPONSES
        },
        sender_throttle=_throttle(settings.sender_rate_limit, settings.sender_burst_limit),
        stage_throttle=stage,
        credentials_role=None,
        source=FROM_FUNCTIONS,
        batch_request_templates=(
            {JSON: request_template(batch_state_machine_arn, MAX_BATCH_REQUEST_BYTES)}
            if batch_state_machine_arn
            else {}
        ),
        api_key_required=API_KEY_REQUIRED,
    )


# API Gateway's limits when a stage throttle sets only one of the two (the account defaults).
ACCOUNT_RATE_LIMIT = 10_000.0
ACCOUNT_BURST_LIMIT = 5_000


def _throttle(rate: float | None, burst: int | None) -> Throttle:
    return Throttle(float(rate if rate is not None else ACCOUNT_RATE_LIMIT), int(burst or ACCOUNT_BURST_LIMIT))


# -- reading the synthesized template ----------------------------------------------------------------


USAGE_PLAN = "AWS::ApiGateway::UsagePlan"


class TemplateError(ValueError):
    """The template does not have the API `relay dev` expects."""


def definition_from_template(
    template: dict[str, Any], state_machine_arn: str, source: str, batch_state_machine_arn: str | None = None
) -> ApiDefinition:
    resources: dict[str, Any] = template.get("Resources", {})
    resolve = _resolver(template, state_machine_arn, batch_state_machine_arn)
    integration = _post_messages(resources)["Properties"]["Integration"]
    # The batch route is read when its machine's local ARN is known (as `definition_from_functions`).
    batch = _post_batch(resources) if batch_state_machine_arn is not None else None
    batch_templates = batch["Properties"]["Integration"].get("RequestTemplates", {}) if batch else {}
    return ApiDefinition(
        request_templates={kind: resolve(text) for kind, text in integration.get("RequestTemplates", {}).items()},
        passthrough_behavior=integration.get("PassthroughBehavior", "WHEN_NO_MATCH"),
        integration_responses=tuple(
            IntegrationResponseRule(
                str(rule["StatusCode"]),
                {kind: resolve(text) for kind, text in rule.get("ResponseTemplates", {}).items()},
                rule.get("SelectionPattern") or None,
            )
            for rule in integration.get("IntegrationResponses", [])
        ),
        gateway_responses=_gateway_responses(resources, resolve),
        sender_throttle=_default_plan_throttle(resources),
        stage_throttle=_stage_throttle(resources),
        credentials_role=_logical_id(integration.get("Credentials")),
        source=source,
        batch_request_templates={kind: resolve(text) for kind, text in batch_templates.items()},
        api_key_required=_api_key_required(resources),
    )


def _api_key_required(resources: dict[str, Any]) -> bool:
    """Whether every method behind the authorizer requires an API key (the local gateway has one rule
    for them; the console's open routes, with no authorizer, serve static files and need neither)."""
    methods = [method["Properties"] for method in _of_type(resources, "AWS::ApiGateway::Method").values()]
    guarded = [method for method in methods if method.get("AuthorizationType") != "NONE"]
    return bool(guarded) and all(method.get("ApiKeyRequired") is True for method in guarded)


def _of_type(resources: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {key: value for key, value in resources.items() if value.get("Type") == resource_type}


def _messages_resources(resources: dict[str, Any]) -> set[str]:
    """The `/messages` resource directly under the API's root."""
    return {
        key
        for key, value in _of_type(resources, "AWS::ApiGateway::Resource").items()
        if value["Properties"].get("PathPart") == "messages" and "Fn::GetAtt" in value["Properties"].get("ParentId", {})
    }


def _post_method(resources: dict[str, Any], parents: set[str]) -> dict[str, Any] | None:
    for method in _of_type(resources, "AWS::ApiGateway::Method").values():
        properties = method["Properties"]
        if properties.get("HttpMethod") == "POST" and _logical_id(properties.get("ResourceId")) in parents:
            return method
    return None


def _post_messages(resources: dict[str, Any]) -> dict[str, Any]:
    """The POST method of the `/messages` resource directly under the API's root."""
    method = _post_method(resources, _messages_resources(resources))
    if method is None:
        raise TemplateError("the template has no POST /messages method")
    return method


def _post_batch(resources: dict[str, Any]) -> dict[str, Any] | None:
    """The POST method of `/messages/batch`, if the template has one."""
    messages = _messages_resources(resources)
    batch = {
        key
        for key, value in _of_type(resources, "AWS::ApiGateway::Resource").items()
        if value["Properties"].get("PathPart") == "batch"
        and _logical_id(value["Properties"].get("ParentId")) in messages
    }
    return _post_method(resources, batch)


def _gateway_responses(resources: dict[str, Any], resolve: Callable[[Any], str]) -> dict[str, GatewayResponseRule]:
    rules = {}
    for response in _of_type(resources, "AWS::ApiGateway::GatewayResponse").values():
        properties = response["Properties"]
        headers = {
            name.removeprefix("gatewayresponse.header."): str(value).strip("'")
            for name, value in properties.get("ResponseParameters", {}).items()
            if name.startswith("gatewayresponse.header.")
        }
        rules[properties["ResponseType"]] = GatewayResponseRule(
            str(properties["StatusCode"]) if "StatusCode" in properties else None,
            {kind: resolve(text) for kind, text in properties.get("ResponseTemplates", {}).items()},
            headers,
        )
    return rules


def _default_plan_throttle(resources: dict[str, Any]) -> Throttle:
    plans = [plan["Properties"].get("Throttle") or {} for plan in _of_type(resources, USAGE_PLAN).values()]
    if len(plans) != 1:
        raise TemplateError(f"the template has {len(plans)} usage plans; relay dev expects the one default plan")
    return _throttle(plans[0].get("RateLimit"), plans[0].get("BurstLimit"))


def _stage_throttle(resources: dict[str, Any]) -> Throttle | None:
    """The stage-wide method setting (`/*`, `*`) that caps all callers together, if any."""
    for stage in _of_type(resources, "AWS::ApiGateway::Stage").values():
        for setting in stage["Properties"].get("MethodSettings", []):
            rate, burst = setting.get("ThrottlingRateLimit"), setting.get("ThrottlingBurstLimit")
            if setting.get("ResourcePath") == "/*" and (rate is not None or burst is not None):
                return _throttle(rate, burst)
    return None


def _logical_id(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def _resolver(
    template: dict[str, Any], state_machine_arn: str, batch_state_machine_arn: str | None = None
) -> Callable[[Any], str]:
    """Resolve `Ref` and `Fn::Join` as CloudFormation would, with the local ingest machines' ARNs."""
    from relay.local.emulator import ACCOUNT_ID, REGION

    refs = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID, "AWS::Partition": "aws"}
    refs["AWS::URLSuffix"] = "amazonaws.com"
    ingest = _logical_id(template.get("Outputs", {}).get("IngestStateMachineArn", {}).get("Value"))
    if ingest is not None:
        refs[ingest] = state_machine_arn
    batch = _logical_id(template.get("Outputs", {}).get("IngestBatchStateMachineArn", {}).get("Value"))
    if batch is not None and batch_state_machine_arn is not None:
        refs[batch] = batch_state_machine_arn

    def resolve(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in refs:
            return refs[value["Ref"]]
        if isinstance(value, dict) and "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return str(separator).join(resolve(part) for part in parts)
        raise TemplateError(f"relay dev cannot resolve {json.dumps(value)[:200]}")

    return resolve
