"""A small HTTP client for the Relay API, used by the CLI (local server or a deployed API)."""

from __future__ import annotations

import builtins
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from functions.contract.settings_names import ToolVariable
from functions.domain.web.origins import target_id

DEFAULT_URL = "http://127.0.0.1:8000"


def credentials_path() -> Path:
    return Path(os.environ.get(ToolVariable.HOME, Path.home() / ".relay")) / "credentials.json"


def load_credentials(url: str) -> dict[str, Any]:
    """What `relay dev` saved for the API at `url` (its development sender's token)."""
    try:
        saved = json.loads(credentials_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entry = saved.get(url.rstrip("/"), {})
    return entry if isinstance(entry, dict) else {}


def save_credentials(url: str, entry: dict[str, Any]) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = {}
    saved[url.rstrip("/")] = entry
    path.write_text(json.dumps(saved, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return path


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

    def request(self, method: str, path: str, payload: bytes | None = None) -> ApiAnswer:
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
        payload = message if isinstance(message, bytes) else _json(message)
        return self.request("POST", "/messages", payload)

    def send_batch(self, messages: list[Any] | bytes) -> ApiAnswer:
        """POST /messages/batch: up to 100 messages, one answer with a result per message, in order."""
        payload = messages if isinstance(messages, bytes) else _json({"messages": messages})
        return self.request("POST", "/messages/batch", payload)

    def status(self, message_id: str, events_cursor: str | None = None) -> ApiAnswer:
        query = f"?{urlencode({'eventsCursor': events_cursor})}" if events_cursor else ""
        return self.request("GET", _item_path("messages", message_id) + query)

    def status_with_history(self, message_id: str) -> ApiAnswer:
        """`status`, its `events` the message's whole history: a long history comes in pages (newest
        first, each oldest first, `eventsCursor` naming the page before), read here until the first."""
        answer = self.status(message_id)
        if not answer.ok or not isinstance(answer.body, dict):
            return answer
        body = answer.body
        cursor = body.pop("eventsCursor", None)
        while cursor:
            earlier = self.status(message_id, str(cursor))
            if not earlier.ok:
                return earlier
            body["events"] = list(earlier.body.get("events", [])) + list(body.get("events", []))
            cursor = earlier.body.get("eventsCursor")
        return answer

    def list(self, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> ApiAnswer:
        """GET /messages: a page of the sender's messages, newest first (in `status`, or every status)."""
        query = {
            **({"status": status} if status else {}),
            **({"limit": str(limit)} if limit else {}),
            **({"cursor": cursor} if cursor else {}),
        }
        return self.request("GET", "/messages" + (f"?{urlencode(query)}" if query else ""))

    def replay(self, message_id: str) -> ApiAnswer:
        return self.request("POST", _item_path("messages", message_id, "replay"), b"")

    def replay_many(self, job_filter: dict[str, Any]) -> ApiAnswer:
        """POST /messages/replay: start a bulk replay job ({status, since?, until?, origin?})."""
        return self.request("POST", "/messages/replay", _json(job_filter))

    def replay_job(self, job_id: str) -> ApiAnswer:
        return self.request("GET", _item_path("replays", job_id))

    def cancel(self, message_id: str) -> ApiAnswer:
        return self.request("POST", _item_path("messages", message_id, "cancel"), b"")

    def put_schedule(self, name: str, schedule: dict[str, Any]) -> ApiAnswer:
        """PUT /schedules/{name}: create or replace a cron schedule ({cron, timezone?, message})."""
        return self.request("PUT", _item_path("schedules", name), _json(schedule))

    def schedules(self) -> ApiAnswer:
        return self.request("GET", "/schedules")

    def schedule(self, name: str) -> ApiAnswer:
        return self.request("GET", _item_path("schedules", name))

    def delete_schedule(self, name: str) -> ApiAnswer:
        return self.request("DELETE", _item_path("schedules", name))

    def pause_schedule(self, name: str, paused: bool = True) -> ApiAnswer:
        """POST /schedules/{name}/pause (or /resume with `paused=False`)."""
        action = "pause" if paused else "resume"
        return self.request("POST", _item_path("schedules", name, action), b"")

    def put_target(self, origin: str, rate_per_second: float | None, max_concurrency: int | None) -> ApiAnswer:
        body = {"origin": origin, "ratePerSecond": rate_per_second, "maxConcurrency": max_concurrency}
        return self.request("PUT", "/targets", _json(body))

    def targets(self) -> ApiAnswer:
        return self.request("GET", "/targets")

    def delete_target(self, origin: str) -> ApiAnswer:
        # The path carries the target's id (no "/": API Gateway would route on a decoded %2F).
        return self.request("DELETE", f"/targets/{quote(target_id(origin.strip().rstrip('/')), safe=':*')}")

    def target_health(self, origin: str) -> ApiAnswer:
        return self.request("GET", f"/targets/health?{urlencode({'origin': origin})}")

    def resume_target(self, origin: str) -> ApiAnswer:
        return self.request("POST", "/targets/resume", _json({"origin": origin}))

    def put_notifications(self, url: str, events: tuple[str, ...] | builtins.list[str]) -> ApiAnswer:
        return self.request("PUT", "/notifications", _json({"url": url, "events": events}))

    def notifications(self) -> ApiAnswer:
        return self.request("GET", "/notifications")

    def delete_notifications(self) -> ApiAnswer:
        return self.request("DELETE", "/notifications")

    def admin(self, method: str, path: str, payload: dict[str, Any] | None = None) -> ApiAnswer:
        body = _json(payload) if payload is not None else (b"" if method == "POST" else None)
        return self.request(method, f"/_admin{path}", body)


def _item_path(collection: str, name: str, action: str = "") -> str:
    """`/collection/name[/action]`: the name (a message id, a job id, a schedule's name) is quoted
    whole, so a "/" in it stays inside its one path segment."""
    return f"/{collection}/{quote(name, safe='')}" + (f"/{action}" if action else "")


def _json(body: Any) -> bytes:
    return json.dumps(body).encode("utf-8")


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")
