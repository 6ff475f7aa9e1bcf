"""The local HTTP API of `relay dev`: the same contract as API Gateway in front of the stack.

- Every /messages route passes API Gateway's front door as deployed (relay/local/apigateway/gateway.py): the
  real token authorizer (401 unknown token, 403 disabled sender), then the throttles (429).
- POST /messages is the deployed integration: its request mapping template rendered, the ingest
  machine started synchronously with what it produced, the integration response rendered; POST
  /messages/batch the same with the batch ingest machine (any other method there: 404, as on AWS).
- The other /messages routes, /replays/{id}, /notifications and /targets... invoke the API Lambda handler with an
  API Gateway proxy event.
- /console and /console/{asset} (the web console's files) invoke the same handler without the
  authorizer, as the deployed API does: the same files, with the same headers.
- /_admin/senders... serves `relay senders` locally, only with the admin token `relay dev` prints.
- Every route refuses a `Host` that is not the address served (421): a web page whose name was
  rebound to 127.0.0.1 gets nothing. Admin POSTs also need `Content-Type: application/json`, so
  no request a browser sends without a CORS preflight (no Authorization, text/plain, forms) acts.

HTTP itself (framing, limits, timeouts) is relay/local/http_server.py's.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from functions.adapters import aws
from functions.adapters.stores.senders import SenderRepository
from functions.contract.console_routes import CONSOLE_PATH
from functions.domain.config import get_settings
from functions.domain.exceptions import FieldError, MessageInvalid, SenderExists, SenderUnknown
from functions.domain.validation import ENVELOPE_ALLOWANCE_BYTES, MAX_BATCH_REQUEST_BYTES
from functions.domain.web.json_text import loads_strict
from functions.services.http_api.responses import SYSTEM_ERROR, error_response
from relay.admin import AdminInputInvalid, SenderAdmin, SenderNotCreated
from relay.local.apigateway.api_definition import load_api_definition
from relay.local.apigateway.gateway import Answer, ApiGateway, Caller, GatewayRequest
from relay.local.emulator import LocalAws
from relay.local.http_server import HttpRequest, HttpResponse, ServerLimits, StrictHttpServer
from stacks.paths import OPENAPI_PATH

ADMIN_TOKEN_PREFIX = "rlyadm_"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")

BATCH_PATH = "/messages/batch"


def local_gateway(local: LocalAws) -> ApiGateway:
    """API Gateway's rules as deployed, read from the template `local` runs, applied locally.

    The integration's StartSyncExecution goes through `local`, which authorizes it against the
    integration's role in that template (IAM enforced) before running the ingest machine.
    """
    assert local.template_path is not None, "start() the LocalAws first"
    arns = local.state_machine_arns
    definition = load_api_definition(arns["relay-ingest"], local.template_path, arns.get("relay-ingest-batch"))
    return ApiGateway(
        definition,
        invoke=local.invoke,
        start_sync_execution=local.start_sync_execution,
        sender_limits=_sender_limits,
        api_key_check=LocalApiKeys().usable,
    )


class LocalApiKeys:
    """API Gateway's check of the key the authorizer returned, on the embedded AWS (where `relay
    senders create` made it): it exists, is enabled and is in a usage plan. A key's id is found by
    its value once (values never change): through the caller's sender record, which names its key,
    or else by listing the keys; its state is read at every call."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def usable(self, sender_id: str, value: str) -> bool:
        apigateway = aws.client("apigateway")
        key_id = self._id(apigateway, sender_id, value)
        if key_id is None:
            return False
        try:
            enabled = bool(apigateway.get_api_key(apiKey=key_id).get("enabled"))
        except ClientError:  # deleted since
            with self._lock:
                self._ids.pop(value, None)
            return False
        return enabled and bool(apigateway.get_usage_plans(keyId=key_id).get("items"))

    def _id(self, apigateway: Any, sender_id: str, value: str) -> str | None:
        with self._lock:
            if value in self._ids:
                return self._ids[value]
        recorded = (SenderRepository(get_settings().table_name).get(sender_id) or {}).get("apiKeyId")
        found: dict[str, str] = {}
        if recorded:
            with contextlib.suppress(ClientError):
                key = apigateway.get_api_key(apiKey=recorded, includeValue=True)
                found = {key["value"]: key["id"]}
        if value not in found:
            pages = apigateway.get_paginator("get_api_keys").paginate(includeValues=True)
            found = {key["value"]: key["id"] for page in pages for key in page.get("items", [])}
        with self._lock:
            self._ids.update(found)
            return self._ids.get(value)


def _sender_limits(sender_id: str) -> dict[str, Any]:
    """The limits a sender was created with (its own usage plan on AWS): ratePerSecond, burst."""
    sender = SenderRepository(get_settings().table_name).get(sender_id) or {}
    limits: dict[str, Any] = sender.get("limits") or {}
    return limits


def new_admin_token() -> str:
    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def default_limits() -> ServerLimits:
    """The server's defaults; the body limit is the API's (a message plus its envelope, or a batch)."""
    single = get_settings().max_body_bytes + ENVELOPE_ALLOWANCE_BYTES
    return ServerLimits(max_body_bytes=max(single, MAX_BATCH_REQUEST_BYTES))


class RelayHttpServer(StrictHttpServer):
    """relay dev's HTTP front: the strict server with Relay's routes."""

    def __init__(
        self,
        address: tuple[str, int],
        local: LocalAws,
        gateway: ApiGateway | None = None,
        *,
        admin_token: str | None = None,
        limits: ServerLimits | None = None,
    ) -> None:
        self.local = local
        self.gateway = gateway or local_gateway(local)
        self.admin_token = admin_token or new_admin_token()
        super().__init__(address, self.handle, limits or default_limits())
        host, port = address[0], self.server_address[1]
        names = LOOPBACK_NAMES if host in WILDCARD_HOSTS or host in LOOPBACK_NAMES else (*LOOPBACK_NAMES, host)
        self.allowed_hosts = frozenset(f"{name}:{port}".lower() for name in names) | (
            frozenset(names) if port == 80 else frozenset()
        )

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Route one request (the Host rule first, for every route)."""
        if (request.header("Host") or "").strip().lower() not in self.allowed_hosts:
            allowed = ", ".join(sorted(self.allowed_hosts))
            return _error(421, "MISDIRECTED_REQUEST", f"The Host header must be one of: {allowed}.", request)
        path = request.path
        if path.startswith("/_admin/") or path == "/_admin":
            return self._admin(request)
        if path == "/messages" or path.startswith(("/messages/", "/replays/")):
            return self._messages(request)
        if path == "/targets" or path.startswith("/targets/"):
            return self._targets(request)
        if path == "/schedules" or path.startswith("/schedules/"):
            return self._schedules(request)
        if path == CONSOLE_PATH or path.startswith(f"{CONSOLE_PATH}/"):
            return self._console(request)
        if path == "/notifications":
            return self._notifications(request)
        if request.method == "GET" and path == "/health":
            return HttpResponse(200, json.dumps({"status": "ok"}), headers=_request_id(request))
        if request.method == "GET" and path == "/openapi.json" and OPENAPI_PATH.exists():
            return HttpResponse(200, OPENAPI_PATH.read_text(encoding="utf-8"), headers=_request_id(request))
        # API Gateway answers a method or route the API does not define with its
        # MISSING_AUTHENTICATION_TOKEN gateway response, mapped to 404 NOT_FOUND (stacks/api_mapping.py).
        return _error(404, "NOT_FOUND", "No such route.", request)

    # -- /messages: API Gateway's rules -----------------------------------------------------------

    def _messages(self, request: HttpRequest) -> HttpResponse:
        # /messages/batch is a resource of its own with only POST (not a message id).
        if request.method not in ("GET", "POST") or (request.path == BATCH_PATH and request.method != "POST"):
            return _error(404, "NOT_FOUND", "No such route.", request)
        gateway_request = _gateway_request(request)
        admitted = self.gateway.admit(gateway_request)
        if isinstance(admitted, Answer):
            return _from_answer(admitted, request)
        if request.method == "POST" and request.path in ("/messages", BATCH_PATH):
            answer = self.gateway.post_messages(gateway_request, admitted, batch=request.path == BATCH_PATH)
            return _from_answer(answer, request)
        return self._api(request, admitted)

    def _targets(self, request: HttpRequest) -> HttpResponse:
        """PUT|GET /targets, DELETE /targets/{id}, GET /targets/health, POST /targets/resume: the API
        function, as on AWS (the static resources take precedence over {id})."""
        fixed = {"/targets": ("GET", "PUT"), "/targets/health": ("GET",), "/targets/resume": ("POST",)}
        allowed = fixed.get(request.path, ("DELETE",))
        # API Gateway matches routes on the decoded path (a %2F in {id} is one more segment there) and
        # hands the function the path as sent.
        nested = request.path not in fixed and "/" in unquote(request.path.removeprefix("/targets/"))
        return self._authorized_api(request, routed=request.method in allowed and not nested)

    def _schedules(self, request: HttpRequest) -> HttpResponse:
        """GET /schedules, PUT|GET|DELETE /schedules/{name}, POST /schedules/{name}/pause|resume: the
        API function, as on AWS."""
        parts = unquote(request.path).strip("/").split("/")
        if len(parts) == 1:
            allowed: tuple[str, ...] = ("GET",)
        elif len(parts) == 2:
            allowed = ("GET", "PUT", "DELETE")
        else:
            allowed = ("POST",) if len(parts) == 3 and parts[2] in ("pause", "resume") else ()
        return self._authorized_api(request, routed=request.method in allowed)

    def _notifications(self, request: HttpRequest) -> HttpResponse:
        """PUT|GET|DELETE /notifications: the API function, as on AWS."""
        return self._authorized_api(request, routed=request.method in ("PUT", "GET", "DELETE"))

    def _authorized_api(self, request: HttpRequest, *, routed: bool) -> HttpResponse:
        """A route of the API function behind the authorizer: 404 when the API defines no such method
        there (not `routed`), else API Gateway's admission (authorizer, throttles), then the function."""
        if not routed:
            return _error(404, "NOT_FOUND", "No such route.", request)
        admitted = self.gateway.admit(_gateway_request(request))
        if isinstance(admitted, Answer):
            return _from_answer(admitted, request)
        return self._api(request, admitted)

    def _console(self, request: HttpRequest) -> HttpResponse:
        """GET /console and GET /console/{asset}: the API function, no authorizer (static files).

        As API Gateway routes them: /console/ is /console, a deeper path matches no resource."""
        asset = request.path.removeprefix(CONSOLE_PATH).removeprefix("/")
        if request.method != "GET" or "/" in unquote(asset):
            return _error(404, "NOT_FOUND", "No such route.", request)
        return self._api(request, None)

    def _api(self, request: HttpRequest, caller: Caller | None) -> HttpResponse:
        """The API Lambda handler, invoked with an API Gateway proxy event (`caller`: the authorizer's)."""
        body = request.body if request.method in ("POST", "PUT") else b""
        event = {
            "resource": request.path,
            "path": request.path,
            "httpMethod": request.method,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {},
            "queryStringParameters": request.query or None,
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {
                "requestId": request.request_id,
                "stage": "local",
                "httpMethod": request.method,
                "path": request.path,
                "resourcePath": request.path,
                "authorizer": {**caller.context, "principalId": caller.principal_id} if caller else None,
                "identity": {"sourceIp": request.client_ip},
            },
            "body": body.decode("utf-8", errors="replace") if body else None,
            "isBase64Encoded": False,
        }
        try:
            answer = self.local.invoke("relay-api", event)
        except Exception:
            return _error(500, SYSTEM_ERROR, "Relay could not process the request.", request)
        return _from_proxy_answer(answer, request)

    # -- /_admin: the admin token -----------------------------------------------------------------

    def _admin(self, request: HttpRequest) -> HttpResponse:
        refused = self._admin_refusal(request)
        if refused is not None:
            return refused
        try:
            result = _admin_call(request, SenderAdmin(get_settings().table_name))
        except AdminInputInvalid as error:
            return _error(400, "VALIDATION_ERROR", str(error), request, error.details)
        except SenderExists as error:
            return _error(409, "SENDER_EXISTS", str(error), request)
        except SenderUnknown as error:
            return _error(404, "SENDER_NOT_FOUND", str(error), request)
        except SenderNotCreated as error:
            return _error(500, "SENDER_NOT_CREATED", str(error), request)
        except LookupError:
            return _error(404, "NOT_FOUND", "No such route.", request)
        return HttpResponse(200, json.dumps(result), headers=_request_id(request))

    def _admin_refusal(self, request: HttpRequest) -> HttpResponse | None:
        """401 without the admin token (compared in constant time); 415 for a POST that is not JSON."""
        scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
        given = token.strip().encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, self.admin_token.encode("utf-8")):
            return _error(401, "UNAUTHORIZED", "The admin routes need `Authorization: Bearer <admin token>`.", request)
        media_type = (request.header("Content-Type") or "").split(";", 1)[0].strip().lower()
        if request.method == "POST" and media_type != "application/json":
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", "Send JSON with `Content-Type: application/json`.", request)
        return None


AdminCall = Callable[[SenderAdmin, str, dict[str, Any]], Any]
# (method, action) -> the call; `sender` is the id in the path ("" for /_admin/senders).
ADMIN_CALLS: dict[tuple[str, str], AdminCall] = {
    ("GET", "list"): lambda admin, sender, body: admin.list(),
    ("POST", "create"): lambda admin, sender, body: admin.create(
        body["senderId"], body.get("ratePerSecond"), body.get("burst")
    ),
    ("POST", "rotate-token"): lambda admin, sender, body: admin.rotate_token(sender, body.get("graceHours", 24.0)),
    ("POST", "rotate-secret"): lambda admin, sender, body: admin.rotate_secret(sender),
    ("POST", "disable"): lambda admin, sender, body: admin.set_status(sender, enabled=False),
    ("POST", "enable"): lambda admin, sender, body: admin.set_status(sender, enabled=True),
}


def _admin_call(request: HttpRequest, admin: SenderAdmin) -> Any:
    """Run the admin call the route names (LookupError: no such route), its input checked first."""
    parts = [part for part in request.path.split("/") if part][1:]  # after "_admin"
    if parts == ["senders"]:
        sender, action = "", "list" if request.method == "GET" else "create"
    elif len(parts) == 3 and parts[0] == "senders":
        sender, action = parts[1], parts[2]
    else:
        raise LookupError(request.path)
    call = ADMIN_CALLS[(request.method, action)]
    body = _admin_body(request.body, action)
    return call(admin, sender, body)


def _admin_body(raw: bytes, action: str) -> dict[str, Any]:
    """The JSON object of an admin POST, checked against its schema (an empty body is `{}`)."""
    from relay.admin import CREATE_SENDER, ROTATE_TOKEN, SENDER_ACTION, check_admin_input

    try:
        document = loads_strict(raw) if raw.strip() else {}
    except MessageInvalid as error:  # nested deeper than the API's limit, named as the API names it
        raise AdminInputInvalid(error.details, "The admin request is invalid.") from None
    except ValueError as error:
        detail = FieldError("$", f"the request body is not valid JSON: {error}"[:300])
        raise AdminInputInvalid([detail], "The admin request is invalid.") from None
    kind = {"create": CREATE_SENDER, "rotate-token": ROTATE_TOKEN}.get(action, SENDER_ACTION)
    if action != "list":
        check_admin_input(kind, document)
    return dict(document) if isinstance(document, dict) else {}


def _request_id(request: HttpRequest) -> dict[str, str]:
    return {"x-request-id": request.request_id}


def _error(
    status: int, code: str, message: str, request: HttpRequest, details: list[FieldError] | None = None
) -> HttpResponse:
    answer = error_response(status, code, message, request.request_id, details)
    return HttpResponse(status, str(answer["body"]), headers=_request_id(request))


def _gateway_request(request: HttpRequest) -> GatewayRequest:
    """A request as API Gateway sees it (a body only with the methods that carry one here)."""
    return GatewayRequest(
        method=request.method,
        path=request.path,
        headers=dict(request.headers),
        query=request.query,
        body=request.body if request.method in ("PUT", "POST") else b"",
        source_ip=request.client_ip,
        request_id=request.request_id,
    )


def _from_proxy_answer(answer: dict[str, Any], request: HttpRequest) -> HttpResponse:
    """A proxy integration's answer as API Gateway sends it on: status, body and the function's headers."""
    headers = {str(name): str(value) for name, value in (answer.get("headers") or {}).items()}
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers[str(name)] = ", ".join(str(value) for value in values)
    content_type = next((headers.pop(name) for name in list(headers) if name.lower() == "content-type"), None)
    return HttpResponse(
        int(answer["statusCode"]),
        str(answer.get("body") or ""),
        content_type or "application/json",
        {**headers, **_request_id(request)},
    )


def _from_answer(answer: Answer, request: HttpRequest) -> HttpResponse:
    return HttpResponse(answer.status, answer.body, answer.content_type, {**answer.headers, **_request_id(request)})
