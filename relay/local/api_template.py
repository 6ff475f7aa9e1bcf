"""The REST API as the synthesized template declares it, for the local server to serve.

Routes (method and path, from the resource tree), their integrations with intrinsics resolved to
local names (the StartSyncExecution request mapping names the local ingest machine), the gateway
responses, and the stage's and usage plans' throttling: read once from the template so the local
API Gateway needs no description of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from relay.local.template import Template

REST_API = "AWS::ApiGateway::RestApi"
RESOURCE = "AWS::ApiGateway::Resource"
METHOD = "AWS::ApiGateway::Method"
GATEWAY_RESPONSE = "AWS::ApiGateway::GatewayResponse"
STAGE = "AWS::ApiGateway::Stage"
USAGE_PLAN = "AWS::ApiGateway::UsagePlan"


@dataclass(frozen=True)
class ApiMethodSpec:
    http_method: str
    path: str  # e.g. /messages/{messageId}/replay
    integration: dict[str, Any]  # Type, Uri, Credentials, RequestTemplates, IntegrationResponses, ...
    authorization_type: str
    api_key_required: bool


@dataclass(frozen=True)
class GatewayResponseSpec:
    response_type: str  # DEFAULT_4XX, THROTTLED, UNAUTHORIZED, ...
    status_code: str | None
    templates: dict[str, str]
    headers: dict[str, str]  # header name -> mapping expression ('Bearer' in quotes: a literal)


@dataclass(frozen=True)
class ApiSpec:
    methods: tuple[ApiMethodSpec, ...]
    gateway_responses: dict[str, GatewayResponseSpec]
    # The stage's method settings and each usage plan's throttle, as written (RateLimit/BurstLimit ...).
    stage_method_settings: tuple[dict[str, Any], ...]
    usage_plan_throttles: tuple[dict[str, Any], ...]

    def method(self, http_method: str, path: str) -> ApiMethodSpec | None:
        return next((m for m in self.methods if (m.http_method, m.path) == (http_method, path)), None)

    @property
    def start_sync_role_arn(self) -> str | None:
        """The credentials role of the integration that calls StartSyncExecution (POST /messages)."""
        for method in self.methods:
            if "StartSyncExecution" in str(method.integration.get("Uri", "")) and "Credentials" in method.integration:
                return str(method.integration["Credentials"])
        return None


def _path(template: Template, reference: Any) -> str:
    """The path of a resource, following ParentId up to the API's root resource."""
    parts: list[str] = []
    while isinstance(reference, dict) and "Ref" in reference:
        properties = template.resources[reference["Ref"]]["Properties"]
        parts.append(str(properties["PathPart"]))
        reference = properties["ParentId"]
    return "/" + "/".join(reversed(parts))


def _methods(template: Template) -> tuple[ApiMethodSpec, ...]:
    methods = []
    for resource in template.of_type(METHOD).values():
        properties = resource["Properties"]
        methods.append(
            ApiMethodSpec(
                http_method=str(properties["HttpMethod"]),
                path=_path(template, properties.get("ResourceId")),
                integration=template.resolve(properties.get("Integration", {})),
                authorization_type=str(properties.get("AuthorizationType", "NONE")),
                api_key_required=bool(properties.get("ApiKeyRequired", False)),
            )
        )
    return tuple(sorted(methods, key=lambda method: (method.path, method.http_method)))


def _gateway_responses(template: Template) -> dict[str, GatewayResponseSpec]:
    responses = {}
    prefix = "gatewayresponse.header."
    for resource in template.of_type(GATEWAY_RESPONSE).values():
        properties = template.resolve(resource["Properties"])
        headers = {
            name.removeprefix(prefix): str(value)
            for name, value in properties.get("ResponseParameters", {}).items()
            if name.startswith(prefix)
        }
        responses[str(properties["ResponseType"])] = GatewayResponseSpec(
            response_type=str(properties["ResponseType"]),
            status_code=properties.get("StatusCode"),
            templates=dict(properties.get("ResponseTemplates", {})),
            headers=headers,
        )
    return responses


def build_api(template: Template) -> ApiSpec:
    stages = template.of_type(STAGE).values()
    plans = template.of_type(USAGE_PLAN).values()
    return ApiSpec(
        methods=_methods(template),
        gateway_responses=_gateway_responses(template),
        stage_method_settings=tuple(
            setting for stage in stages for setting in stage["Properties"].get("MethodSettings", [])
        ),
        usage_plan_throttles=tuple(
            plan["Properties"]["Throttle"] for plan in plans if "Throttle" in plan["Properties"]
        ),
    )
