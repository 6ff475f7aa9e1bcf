"""API Gateway in front of `relay dev`: the authorizer, the throttles, the mappings, the gateway responses.

Why: locally, a request must meet what it meets on AWS, decided by what the stack deploys
(relay/local/apigateway/api_definition.py), not by a Python imitation of it:

1. the token authorizer: the real handler, given the `Authorization` header as API Gateway gives it;
   no header is 401 without a call, "Unauthorized" is 401, a Deny policy 403, any other failure 500;
2. the API key every method requires: the one the authorizer returned must exist, be enabled and
   be in a usage plan (its API Gateway state on the embedded AWS), or the answer is INVALID_API_KEY
   (403), as a sender without a working key gets on AWS;
3. throttling: each sender's token bucket from its own limits (its own usage plan on AWS) or the
   default plan's, and one bucket for all callers together only if the stage sets a throttle;
4. POST /messages and /messages/batch: the request template chosen by Content-Type (none: 415 with passthrough NEVER),
   rendered with Velocity, StartSyncExecution called with what it produced, the integration
   response chosen by status pattern and rendered, `$context.responseOverride` applied; no answer
   within API Gateway's 29 s is 504 (the run goes on, as it does on AWS);
5. every refusal above is the template's gateway response of its type (DEFAULT_4XX/5XX otherwise).

The authorizer's result is not cached (API Gateway caches it for 5 minutes): a disabled sender is
refused at once locally.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from relay.local.apigateway.api_definition import ApiDefinition, GatewayResponseRule, IntegrationResponseRule, Throttle
from relay.local.apigateway.velocity import MappingError, render, substitute
from stacks.api_mapping import JSON, STAGE_NAME

API_ID = "local"
AUTHORIZER = "relay-authorizer"

# API Gateway's status and message ($context.error.message) for each gateway response type used here.
RESPONSE_TYPES: dict[str, tuple[int, str]] = {
    "UNAUTHORIZED": (401, "Unauthorized"),
    "ACCESS_DENIED": (403, "User is not authorized to access this resource with an explicit deny"),
    "INVALID_API_KEY": (403, "Forbidden"),
    "THROTTLED": (429, "Too Many Requests"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "Unsupported Media Type"),
    "AUTHORIZER_FAILURE": (500, "Internal server error"),
    "API_CONFIGURATION_ERROR": (500, "Internal server error"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
}
# API Gateway's integration timeout for REST APIs (the run goes on; the caller gets 504).
INTEGRATION_TIMEOUT_SECONDS = 29.0


class IntegrationTimeout(Exception):
    """The integration did not answer within the timeout."""


@dataclass(frozen=True)
class GatewayRequest:
    """One HTTP request as API Gateway sees it."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    source_ip: str
    request_id: str

    def header(self, name: str) -> str | None:
        """A header's value, its name matched without regard to case."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON


@dataclass(frozen=True)
class Caller:
    """What the authorizer said about an allowed caller."""

    principal_id: str
    # The authorizer's context, stringified as API Gateway does ($context.authorizer.<key>).
    context: dict[str, str]
    api_key: str | None = None


# Runs a handler in-process (LocalAws.invoke) / runs an EXPRESS machine to its end and answers
# like StartSyncExecution (emulator.run_sync_execution) / the limits a sender was created with
# (`ratePerSecond`, `burst`: its own usage plan on AWS; either missing is the default plan's).
Invoke = Callable[[str, dict[str, Any]], Any]
StartSyncExecution = Callable[[str, dict[str, Any]], dict[str, Any]]
SenderLimits = Callable[[str], dict[str, Any]]
# Whether an API key (its value, as the authorizer returns it, and the caller's principal id) lets
# the caller in: it exists, is enabled and is in a usage plan.
ApiKeyCheck = Callable[[str, str], bool]
# Checks one AWS call against a role of the template (its logical id, the action, the resource) and
# raises, like AWS's AccessDenied, when the role does not allow it.


class TokenBuckets:
    """API Gateway's throttling: per key, `rate` tokens a second up to `burst`, one per request."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, throttle: Throttle) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key, (float(throttle.burst), now))
            tokens = min(float(throttle.burst), tokens + (now - last) * throttle.rate)
            allowed = tokens >= 1
            self._state[key] = (tokens - 1 if allowed else tokens, now)
            return allowed


class ApiGateway:
    """The deployed API's rules, applied to local requests."""

    def __init__(
        self,
        definition: ApiDefinition,
        *,
        invoke: Invoke,
        start_sync_execution: StartSyncExecution,
        sender_limits: SenderLimits,
        api_key_check: ApiKeyCheck | None = None,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
    ) -> None:
        self.definition = definition
        self.integration_timeout = integration_timeout
        self._invoke = invoke
        self._start_sync_execution = start_sync_execution
        self._sender_limits = sender_limits
        # None: keys are not checked (unit tests of the other rules).
        self._api_key_check = api_key_check
        self._plans: dict[str, Throttle] = {}
        self._buckets = TokenBuckets()

    # -- the front door every route shares --------------------------------------------------------

    def admit(self, request: GatewayRequest) -> Caller | Answer:
        """The authorizer's decision, then the throttles: a Caller, or the gateway's answer."""
        caller = self._authorize(request)
        if isinstance(caller, Answer):
            return caller
        if not self._key_usable(caller):
            return self.gateway_answer("INVALID_API_KEY", request, caller)
        stage = self.definition.stage_throttle
        if stage is not None and not self._buckets.allow("(stage)", stage):
            return self.gateway_answer("THROTTLED", request, caller)
        key = caller.api_key or caller.principal_id
        if not self._buckets.allow(f"key:{key}", self._plan(caller.principal_id)):
            return self.gateway_answer("THROTTLED", request, caller)
        return caller

    def _key_usable(self, caller: Caller) -> bool:
        """The API key check of a method that requires one (every method of Relay's API)."""
        if not self.definition.api_key_required or self._api_key_check is None:
            return True
        return bool(caller.api_key) and self._api_key_check(caller.principal_id, str(caller.api_key))

    def _plan(self, principal_id: str) -> Throttle:
        """The sender's own plan (limits given when it was created never change) or the default plan."""
        plan = self._plans.get(principal_id)
        if plan is None:
            limits, default = self._sender_limits(principal_id), self.definition.sender_throttle
            plan = Throttle(float(limits.get("ratePerSecond", default.rate)), int(limits.get("burst", default.burst)))
            self._plans[principal_id] = plan
        return plan

    def _authorize(self, request: GatewayRequest) -> Caller | Answer:
        token = request.header("Authorization") or ""
        if not token.strip():
            return self.gateway_answer("UNAUTHORIZED", request)  # the identity source is missing
        api = f"arn:aws:execute-api:{_region()}:{_account()}:{API_ID}"
        method_arn = f"{api}/{STAGE_NAME}/{request.method}{request.path}"
        event = {"type": "TOKEN", "authorizationToken": token, "methodArn": method_arn}
        try:
            result = self._invoke(AUTHORIZER, event)
        except Exception as error:
            kind = "UNAUTHORIZED" if str(error) == "Unauthorized" else "AUTHORIZER_FAILURE"
            return self.gateway_answer(kind, request)
        if not _allows(result.get("policyDocument", {}), method_arn):
            return self.gateway_answer("ACCESS_DENIED", request)
        context = {str(key): _stringified(value) for key, value in (result.get("context") or {}).items()}
        return Caller(str(result.get("principalId", "")), context, result.get("usageIdentifierKey"))

    # -- POST /messages -----------------------------------------------------------------------------

    def post_messages(self, request: GatewayRequest, caller: Caller, *, batch: bool = False) -> Answer:
        """POST /messages, or POST /messages/batch with `batch` (its own request templates)."""
        templates = self.definition.batch_request_templates if batch else self.definition.request_templates
        template = self._request_template(request.header("Content-Type"), templates)
        if template is None:
            return self.gateway_answer("UNSUPPORTED_MEDIA_TYPE", request, caller)
        body = request.body.decode("utf-8", "surrogateescape")
        params = _params(request)
        try:
            integration_request = render(template, body=body, params=params, context=self._context(request, caller))
            status, payload = self._call_step_functions(integration_request.text)
            rule = _integration_response(self.definition.integration_responses, status)
            content_type, response_template = _response_template(rule, request.header("Accept"))
            answer = render(response_template, body=payload, params=params, context=self._context(request, caller))
        except (MappingError, LookupError):
            return self.gateway_answer("API_CONFIGURATION_ERROR", request, caller)
        except IntegrationTimeout:
            return self.gateway_answer("INTEGRATION_TIMEOUT", request, caller)
        status_code = answer.status or int(rule.status_code)
        return Answer(status_code, answer.text, answer.headers, content_type)

    def _request_template(self, content_type: str | None, request_templates: dict[str, str]) -> str | None:
        """The template for the request's media type (parameters such as charset do not count)."""
        media_type = (content_type or "").split(";", 1)[0].strip().lower() or JSON
        templates = {kind.lower(): text for kind, text in request_templates.items()}
        if media_type in templates:
            return templates[media_type]
        if self.definition.passthrough_behavior == "WHEN_NO_MATCH" or (
            self.definition.passthrough_behavior == "WHEN_NO_TEMPLATES" and not templates
        ):
            return "$input.body"
        return None

    def _call_step_functions(self, request_text: str) -> tuple[int, str]:
        """StartSyncExecution over Step Functions' JSON protocol: (HTTP status, response body)."""
        try:
            request = json.loads(request_text)
            arn, execution_input = str(request["stateMachineArn"]), json.loads(request.get("input") or "{}")
        except (ValueError, KeyError, TypeError) as error:
            return 400, json.dumps({"__type": "InvalidExecutionInput", "message": str(error)})
        outcome: list[tuple[int, str]] = []

        def start() -> None:
            try:
                outcome.append((200, json.dumps(self._start_sync_execution(arn, execution_input), default=str)))
            except Exception as error:
                outcome.append(_aws_error(error))

        worker = threading.Thread(target=start, name="relay-integration", daemon=True)
        worker.start()
        worker.join(self.integration_timeout)
        if not outcome:
            raise IntegrationTimeout(f"no answer within {self.integration_timeout:g} s")
        return outcome[0]

    # -- context and gateway responses --------------------------------------------------------------

    def _context(self, request: GatewayRequest, caller: Caller | None) -> dict[str, Any]:
        """`$context` as API Gateway documents it (the variables a REST API has locally)."""
        now = datetime.now(UTC)
        authorizer = {} if caller is None else {**caller.context, "principalId": caller.principal_id}
        return {
            "accountId": _account(),
            "apiId": API_ID,
            "authorizer": authorizer,
            "domainName": request.header("Host") or "127.0.0.1",
            "extendedRequestId": request.request_id,
            "httpMethod": request.method,
            "identity": {
                "sourceIp": request.source_ip,
                "userAgent": request.header("User-Agent") or "",
                "apiKey": caller.api_key if caller is not None else None,
            },
            "path": f"/{STAGE_NAME}{request.path}",
            "protocol": "HTTP/1.1",
            "requestId": request.request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "resourcePath": request.path,
            "stage": STAGE_NAME,
        }

    def gateway_answer(self, response_type: str, request: GatewayRequest, caller: Caller | None = None) -> Answer:
        """API Gateway's own answer of `response_type`, with the template's gateway response."""
        status, message = RESPONSE_TYPES[response_type]
        family = "DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"
        rule = self.definition.gateway_responses.get(response_type) or self.definition.gateway_responses.get(family)
        rule = rule or GatewayResponseRule(None, {JSON: '{"message":$context.error.messageString}'})
        context = self._context(request, caller)
        context["error"] = {
            "message": message,
            "messageString": json.dumps(message),
            "responseType": response_type,
        }
        content_type, template = next(iter(rule.templates.items()), (JSON, ""))
        body = substitute(template, context)
        return Answer(int(rule.status_code or status), body, dict(rule.headers), content_type)


def _region() -> str:
    from relay.local.emulator import REGION

    return REGION


def _account() -> str:
    from relay.local.emulator import ACCOUNT_ID

    return ACCOUNT_ID


def _params(request: GatewayRequest) -> dict[str, dict[str, str]]:
    return {"path": {}, "querystring": dict(request.query), "header": dict(request.headers)}


def _stringified(value: Any) -> str:
    """Authorizer context values reach `$context.authorizer` as strings (true, 1, ...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _allows(policy: dict[str, Any], method_arn: str) -> bool:
    """An IAM policy of the authorizer: an explicit Deny wins, else some Allow must cover the method."""
    allowed = False
    for statement in policy.get("Statement", []):
        resources = statement.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatchcase(method_arn, pattern) for pattern in resources):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


def _aws_error(error: Exception) -> tuple[int, str]:
    """An AWS call's failure as its HTTP status and `{"__type", "message"}` body."""
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
        kind = str(response["Error"].get("Code", "ClientError"))
    else:
        kind = str(getattr(error, "code", None) or type(error).__name__)
        status = 400 if re.search(r"AccessDenied|DoesNotExist|Invalid|Throttl|Limit", kind) else 500
    return status, json.dumps({"__type": kind, "message": str(error)})


def _integration_response(rules: tuple[IntegrationResponseRule, ...], status: int) -> IntegrationResponseRule:
    """The first rule whose selection pattern matches the whole status, else the default rule."""
    for rule in rules:
        if rule.selection_pattern is not None and re.fullmatch(rule.selection_pattern, str(status)):
            return rule
    for rule in rules:
        if rule.selection_pattern is None:
            return rule
    raise LookupError(f"no integration response for status {status}")


def _response_template(rule: IntegrationResponseRule, accept: str | None) -> tuple[str, str]:
    """The template for the Accept header's first type it has, else application/json, else the first."""
    templates = rule.templates
    for kind in (part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")):
        if kind in templates:
            return kind, templates[kind]
    if JSON in templates:
        return JSON, templates[JSON]
    if templates:
        return next(iter(templates.items()))
    return JSON, "$input.body"  # no template: the integration's body passes through
