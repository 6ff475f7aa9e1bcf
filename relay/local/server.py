"""The local HTTP API of `relay dev`: the same contract as API Gateway in front of the stack.

- Every /messages route needs `Authorization: Bearer <token>`, checked with the same code as the
  Lambda authorizer (401 unknown token, 403 disabled sender), then throttled per sender (429).
- POST /messages runs the ingest state machine exactly as API Gateway's StartSyncExecution
  integration does (same input, the output passed through, a failed run mapped to 500).
- The other /messages routes invoke the API Lambda handler with an API Gateway proxy event.
- /_admin/senders... serves `relay senders` locally (the server only listens on loopback).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from functions.shared.config import get_settings
from functions.shared.exceptions import RelayError, SenderExists, SenderUnknown
from functions.shared.responses import SYSTEM_ERROR, error_response
from functions.shared.senders import Principal, SenderRepository
from functions.shared.validation import ENVELOPE_ALLOWANCE_BYTES
from relay.admin import SenderAdmin
from relay.local.emulator import LocalAws

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


class TokenBucket:
    """Per-sender request throttling, as API Gateway usage plans do it (rate per second, burst)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, rate: float | None = None, burst: int | None = None) -> bool:
        rate = rate or self.rate
        capacity = float(burst or self.burst)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            allowed = tokens >= 1
            self._state[key] = (tokens - 1 if allowed else tokens, now)
            return allowed


class RelayHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # bursts of concurrent senders must not be reset

    def __init__(self, address: tuple[str, int], local: LocalAws, rate: float = 100.0, burst: int = 200) -> None:
        super().__init__(address, _RequestHandler)
        self.local = local
        self.throttle = TokenBucket(rate, burst)

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

    def _send(self, status_code: int, body: str, request_id: str, content_type: str = "application/json") -> None:
        payload = body.encode("utf-8")
        self.send_response(status_code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", request_id)
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

    def _authenticate(self, request_id: str) -> Principal | None:
        """The authorizer's decision, answered like API Gateway (401/403/429)."""
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        principal = None
        if scheme.lower() == "bearer" and token.strip():
            try:
                principal = SenderRepository(get_settings().table_name).authenticate(token.strip())
            except RelayError:
                self._error(500, SYSTEM_ERROR, "Relay could not check the token.", request_id)
                return None
        if principal is None:
            self._error(401, "UNAUTHORIZED", "A valid API token is required (Authorization: Bearer ...).", request_id)
            return None
        if not principal.active:
            self._error(403, "FORBIDDEN", "This sender is disabled.", request_id)
            return None
        if not self.server.throttle.allow(principal.sender_id, principal.rate_limit, principal.burst_limit):
            self._error(429, "THROTTLED", "Too many requests for this sender; slow down.", request_id)
            return None
        return principal

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
        if path == "/messages":
            principal = self._authenticate(request_id)
            if principal is not None:
                self._ingest(body, principal, request_id)
            return
        if path.startswith("/messages/"):
            principal = self._authenticate(request_id)
            if principal is not None:
                self._api("POST", principal, request_id, body)
            return
        self._error(404, "NOT_FOUND", "No such route.", request_id)

    def _no_such_method(self) -> None:
        self.close_connection = True  # any request body stays unread
        self._error(404, "NOT_FOUND", "No such route.", str(uuid.uuid4()))

    def __getattr__(self, name: str) -> Any:
        # http.server looks up `do_<METHOD>` and answers 501 with an HTML page when it is missing.
        # API Gateway answers a method the API does not define with its MISSING_AUTHENTICATION_TOKEN
        # gateway response, which the stack maps to 404 NOT_FOUND (stacks/constructs/api.py).
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
            principal = self._authenticate(request_id)
            if principal is not None:
                self._api("GET", principal, request_id, None)
        else:
            self._error(404, "NOT_FOUND", "No such route.", request_id)

    def _ingest(self, body: bytes, principal: Principal, request_id: str) -> None:
        execution_input = {
            "requestId": request_id,
            "senderId": principal.sender_id,
            "bodyBase64": base64.b64encode(body).decode("ascii"),
        }
        try:
            result = self.server.local.start_sync_execution("relay-ingest", execution_input)
        except Exception:
            result = {"status": "FAILED"}
        if result.get("status") == "SUCCEEDED":
            self._send_answer(json.loads(result["output"]), request_id)
        else:
            # Same mapping as the API Gateway response template: a failed run is a 500.
            self._error(500, SYSTEM_ERROR, "Relay could not process the request.", request_id)

    def _api(self, method: str, principal: Principal, request_id: str, body: bytes | None) -> None:
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
                "authorizer": {"senderId": principal.sender_id, "principalId": principal.sender_id},
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
