"""The local HTTP API of `relay dev`: the same contract as API Gateway in front of the stack.

- Every /messages route passes API Gateway's front door as deployed (relay/local/gateway.py): the
  real token authorizer (401 unknown token, 403 disabled sender), then the throttles (429).
- POST /messages is the deployed integration: its request mapping template rendered, the ingest
  machine started synchronously with what it produced, the integration response rendered.
- The other /messages routes invoke the API Lambda handler with an API Gateway proxy event.
- /_admin/senders... serves `relay senders` locally (the server only listens on loopback).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from functions.shared.config import get_settings
from functions.shared.exceptions import SenderExists, SenderUnknown
from functions.shared.responses import SYSTEM_ERROR, error_response
from functions.shared.senders import SenderRepository
from functions.shared.validation import ENVELOPE_ALLOWANCE_BYTES
from relay.admin import SenderAdmin
from relay.local.api_definition import load_api_definition
from relay.local.emulator import LocalAws
from relay.local.gateway import Answer, ApiGateway, Caller, GatewayRequest

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


def local_gateway(local: LocalAws) -> ApiGateway:
    """API Gateway's rules as deployed, read from the template `local` runs, applied locally.

    The integration's StartSyncExecution goes through `local`, which authorizes it against the
    integration's role in that template (IAM enforced) before running the ingest machine.
    """
    assert local.template_path is not None, "start() the LocalAws first"
    definition = load_api_definition(local.state_machine_arns["relay-ingest"], local.template_path)
    return ApiGateway(
        definition,
        invoke=local.invoke,
        start_sync_execution=local.start_sync_execution,
        sender_limits=_sender_limits,
    )


def _sender_limits(sender_id: str) -> dict[str, Any]:
    """The limits a sender was created with (its own usage plan on AWS): ratePerSecond, burst."""
    sender = SenderRepository(get_settings().table_name).get(sender_id) or {}
    limits: dict[str, Any] = sender.get("limits") or {}
    return limits


class RelayHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # bursts of concurrent senders must not be reset

    def __init__(self, address: tuple[str, int], local: LocalAws, gateway: ApiGateway | None = None) -> None:
        super().__init__(address, _RequestHandler)
        self.local = local
        self.gateway = gateway or local_gateway(local)

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="relay-http", daemon=True)
        thread.start()
        return thread


class _RequestHandler(BaseHTTPRequestHandler):
    server: RelayHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "relay-dev"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the CLI prints what matters

    # -- plumbing -------------------------------------------------------------------------------

    def _send(
        self,
        status_code: int,
        body: str,
        request_id: str,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = body.encode("utf-8", "surrogateescape")
        self.send_response(status_code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _send_answer(self, answer: dict[str, Any], request_id: str) -> None:
        self._send(int(answer["statusCode"]), str(answer["body"]), request_id)

    def _error(self, status: int, code: str, message: str, request_id: str) -> None:
        self._send_answer(error_response(status, code, message, request_id), request_id)

    def _read_body(self, request_id: str) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        limit = get_settings().max_body_bytes + ENVELOPE_ALLOWANCE_BYTES
        if length < 0:
            self._error(400, "VALIDATION_ERROR", "Content-Length is not a number.", request_id)
            self.close_connection = True
            return None
        if length > limit:
            self._error(413, "PAYLOAD_TOO_LARGE", f"The request is {length} bytes; the limit is {limit}.", request_id)
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _gateway_request(self, body: bytes, request_id: str) -> GatewayRequest:
        parts = urlsplit(self.path)
        return GatewayRequest(
            method=self.command,
            path=parts.path,
            headers=dict(self.headers.items()),
            query={name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()},
            body=body,
            source_ip=self.client_address[0],
            request_id=request_id,
        )

    def _send_gateway_answer(self, answer: Answer, request_id: str) -> None:
        self._send(answer.status, answer.body, request_id, answer.content_type, answer.headers)

    def _admit(self, request: GatewayRequest) -> Caller | None:
        """API Gateway's front door (authorizer, throttles); its refusal is answered here."""
        admitted = self.server.gateway.admit(request)
        if isinstance(admitted, Answer):
            self._send_gateway_answer(admitted, request.request_id)
            return None
        return admitted

    # -- routes ---------------------------------------------------------------------------------

    def do_POST(self) -> None:
        request_id = str(uuid.uuid4())
        path = urlsplit(self.path).path
        body = self._read_body(request_id)
        if body is None:
            return
        if path.startswith("/_admin/"):
            self._admin("POST", path, body, request_id)
            return
        if path == "/messages" or path.startswith("/messages/"):
            request = self._gateway_request(body, request_id)
            caller = self._admit(request)
            if caller is not None and path == "/messages":
                self._send_gateway_answer(self.server.gateway.post_messages(request, caller), request_id)
            elif caller is not None:
                self._api("POST", caller, request_id, body)
            return
        self._error(404, "NOT_FOUND", "No such route.", request_id)

    def _no_such_method(self) -> None:
        self.close_connection = True  # any request body stays unread
        self._error(404, "NOT_FOUND", "No such route.", str(uuid.uuid4()))

    def __getattr__(self, name: str) -> Any:
        # http.server looks up `do_<METHOD>` and answers 501 with an HTML page when it is missing.
        # API Gateway answers a method the API does not define with its MISSING_AUTHENTICATION_TOKEN
        # gateway response, which the stack maps to 404 NOT_FOUND (relay/api_mapping.py).
        if name.startswith("do_"):
            return self._no_such_method
        raise AttributeError(name)

    def do_GET(self) -> None:
        request_id = str(uuid.uuid4())
        path = urlsplit(self.path).path
        if path == "/health":
            self._send(200, json.dumps({"status": "ok"}), request_id)
        elif path == "/openapi.json" and OPENAPI_PATH.exists():
            self._send(200, OPENAPI_PATH.read_text(encoding="utf-8"), request_id)
        elif path.startswith("/_admin/"):
            self._admin("GET", path, b"", request_id)
        elif path == "/messages" or path.startswith("/messages/"):
            caller = self._admit(self._gateway_request(b"", request_id))
            if caller is not None:
                self._api("GET", caller, request_id, None)
        else:
            self._error(404, "NOT_FOUND", "No such route.", request_id)

    def _api(self, method: str, caller: Caller, request_id: str, body: bytes | None) -> None:
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        event = {
            "resource": parts.path,
            "path": parts.path,
            "httpMethod": method,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {
                "requestId": request_id,
                "stage": "local",
                "httpMethod": method,
                "path": parts.path,
                "resourcePath": parts.path,
                "authorizer": {**caller.context, "principalId": caller.principal_id},
                "identity": {"sourceIp": self.client_address[0]},
            },
            "body": body.decode("utf-8", errors="replace") if body else None,
            "isBase64Encoded": False,
        }
        try:
            answer = self.server.local.invoke("relay-api", event)
        except Exception:
            self._error(500, SYSTEM_ERROR, "Relay could not process the request.", request_id)
            return
        self._send(int(answer["statusCode"]), str(answer.get("body") or ""), request_id)

    def _admin(self, method: str, path: str, body: bytes, request_id: str) -> None:
        admin = SenderAdmin(get_settings().table_name)
        parts = [part for part in path.split("/") if part][1:]  # after "_admin"
        try:
            payload = json.loads(body) if body else {}
            if method == "GET" and parts == ["senders"]:
                result: Any = admin.list()
            elif method == "POST" and parts == ["senders"]:
                result = admin.create(str(payload["senderId"]), payload.get("ratePerSecond"), payload.get("burst"))
            elif method == "POST" and len(parts) == 3 and parts[0] == "senders":
                sender_id, action = parts[1], parts[2]
                if action == "rotate-token":
                    result = admin.rotate_token(sender_id, float(payload.get("graceHours", 24)))
                elif action == "rotate-secret":
                    result = admin.rotate_secret(sender_id)
                elif action in ("disable", "enable"):
                    result = admin.set_status(sender_id, enabled=action == "enable")
                else:
                    raise KeyError(action)
            else:
                raise KeyError(path)
        except SenderExists as error:
            self._error(409, "SENDER_EXISTS", str(error), request_id)
            return
        except SenderUnknown as error:
            self._error(404, "SENDER_NOT_FOUND", str(error), request_id)
            return
        except (KeyError, ValueError, TypeError):
            self._error(400, "VALIDATION_ERROR", "Unknown admin call or missing field.", request_id)
            return
        self._send(200, json.dumps(result), request_id)
