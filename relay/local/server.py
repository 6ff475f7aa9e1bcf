"""The local HTTP API of `relay dev`: the same contract as API Gateway in front of the stack.

POST /messages runs the ingest state machine exactly as API Gateway's StartSyncExecution
integration does (same input shape, same output pass-through, same failure mapping).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from functions.shared.config import get_settings
from functions.shared.exceptions import RelayError
from functions.shared.model import MessageKey
from functions.shared.repository import MessageRepository
from functions.shared.responses import SYSTEM_ERROR, error_response
from functions.shared.status import status_view
from functions.shared.validation import ENVELOPE_ALLOWANCE_BYTES
from relay.local.emulator import LocalAws

_MESSAGE_PATH = re.compile(r"^/messages/([A-Za-z0-9._:-]{1,128})$")


class RelayHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # bursts of concurrent senders must not be reset

    def __init__(self, address: tuple[str, int], local: LocalAws) -> None:
        super().__init__(address, _RequestHandler)
        self.local = local

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

    def _send(self, status_code: int, body: str, request_id: str) -> None:
        payload = body.encode("utf-8")
        self.send_response(status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", request_id)
        self.end_headers()
        self.wfile.write(payload)

    def _send_answer(self, answer: dict[str, Any], request_id: str) -> None:
        self._send(int(answer["statusCode"]), str(answer["body"]), request_id)

    def _error(self, status: int, code: str, message: str, request_id: str) -> None:
        self._send_answer(error_response(status, code, message, request_id), request_id)

    def _read_body(self, request_id: str) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        limit = get_settings().max_body_bytes + ENVELOPE_ALLOWANCE_BYTES
        if length > limit:
            self._error(413, "PAYLOAD_TOO_LARGE", f"The request is {length} bytes; the limit is {limit}.", request_id)
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    # -- routes ---------------------------------------------------------------------------------

    def do_POST(self) -> None:
        request_id = str(uuid.uuid4())
        path = urlsplit(self.path).path
        if path != "/messages":
            self._error(404, "NOT_FOUND", "No such route.", request_id)
            return
        body = self._read_body(request_id)
        if body is None:
            return
        execution_input = {
            "requestId": request_id,
            "senderId": "",
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

    def do_GET(self) -> None:
        request_id = str(uuid.uuid4())
        parts = urlsplit(self.path)
        if parts.path == "/health":
            self._send(200, json.dumps({"status": "ok"}), request_id)
            return
        match = _MESSAGE_PATH.match(parts.path)
        if not match:
            self._error(404, "NOT_FOUND", "No such route.", request_id)
            return
        sender_id = (parse_qs(parts.query).get("senderId") or [""])[0]
        key = MessageKey(sender_id, match.group(1))
        try:
            stored = MessageRepository(get_settings().table_name).get_message(key)
        except RelayError:
            self._error(500, SYSTEM_ERROR, "Relay could not read the message.", request_id)
            return
        if stored is None:
            self._error(404, "MESSAGE_NOT_FOUND", f"No message '{key.message_id}'.", request_id)
            return
        self._send(HTTPStatus.OK, json.dumps(status_view(stored)), request_id)
