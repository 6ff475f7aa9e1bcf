"""A small HTTP client for the Relay API, used by the CLI (local server or a deployed API)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass
class ApiAnswer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class RelayClient:
    def __init__(self, base_url: str = DEFAULT_URL, token: str | None = None, timeout: float = 35.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, payload: bytes | None = None) -> ApiAnswer:
        request = urllib.request.Request(self.base_url + path, data=payload, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return ApiAnswer(response.status, _decode(response.read()))
        except urllib.error.HTTPError as error:
            return ApiAnswer(error.code, _decode(error.read()))

    def send(self, message: dict[str, Any] | bytes) -> ApiAnswer:
        payload = message if isinstance(message, bytes) else json.dumps(message).encode("utf-8")
        return self._request("POST", "/messages", payload)

    def status(self, message_id: str, sender_id: str | None = None) -> ApiAnswer:
        query = f"?{urlencode({'senderId': sender_id})}" if sender_id else ""
        return self._request("GET", f"/messages/{quote(message_id, safe='')}{query}")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")
