"""Local webhook receivers with scripted behaviour, for `relay demo`, the tests and the benchmarks.

Paths choose the behaviour, so one server plays every kind of target:
  /ok            200 always
  /flaky/N       503 for the first N requests (per message), then 200
  /fail          500 always
  /missing       404 always
  /slow/MS[/S]   waits MS milliseconds, then answers S (default 200)
  /hang          accepts the request and never answers
  /throttle      429 with Retry-After: 1
  /busy/S[/N]    503 with Retry-After: S for the first N requests (default 1, per message), then 200
  /redirect      302 to /ok (must not be followed)
  /reset         closes the connection without answering
  /switch/NAME[/S]  500 (or S) until heal(NAME) is called, then 200 (a target that recovers)
  /ratelimit/N   429 (Retry-After: 1) when more than N requests reached this path in the last
                 second, else 200: a receiver that protects itself (give it limits with PUT /targets)
  /outage/S      503 for S seconds from the first request to it (any message), then 200: a target
                 that is down for a while, then recovers (the circuit breaker pauses its messages)
Every request is recorded (method, path, headers, body bytes, and when it arrived).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # time.time() when it arrived

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == lowered), None)


@dataclass
class TargetServer:
    host: str = "127.0.0.1"
    port: int = 0
    received: list[ReceivedRequest] = field(default_factory=list)
    connections: int = 0
    # Requests being answered right now, and the most there ever were at once (concurrency limits).
    in_flight: int = 0
    peak_in_flight: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: Counter[str] = field(default_factory=Counter)
    _release: threading.Event = field(default_factory=threading.Event)
    _healed: set[str] = field(default_factory=set)
    _recent: dict[str, list[float]] = field(default_factory=dict)
    _outages: dict[str, float] = field(default_factory=dict)

    def heal(self, name: str) -> None:
        with self._lock:
            self._healed.add(name)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TargetServer:
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def setup(self) -> None:
                super().setup()
                with target._lock:
                    target.connections += 1

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = ReceivedRequest(self.command, self.path, dict(self.headers.items()), body, time.time())
                webhook_id = request.header("webhook-id") or ""
                with target._lock:
                    target.received.append(request)
                    target._counts[f"{self.path}|{webhook_id}"] += 1
                    seen = target._counts[f"{self.path}|{webhook_id}"]
                with target._lock:
                    target.in_flight += 1
                    target.peak_in_flight = max(target.peak_in_flight, target.in_flight)
                try:
                    target._respond(self, seen)
                finally:
                    with target._lock:
                        target.in_flight -= 1

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 256
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="relay-targets", daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> TargetServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        with self._lock:
            return [request for request in self.received if request.path == path]

    def _respond(self, handler: BaseHTTPRequestHandler, seen: int) -> None:
        parts = handler.path.strip("/").split("/")
        kind = parts[0] if parts else ""
        argument = parts[1] if len(parts) > 1 else ""
        if kind == "flaky":
            status = 503 if seen <= int(argument or 2) else 200
        elif kind == "fail":
            status = 500
        elif kind == "outage":
            with self._lock:
                began = self._outages.setdefault(handler.path, time.monotonic())
            status = 503 if time.monotonic() - began < float(argument or 10) else 200
        elif kind == "switch":
            with self._lock:
                status = 200 if argument in self._healed else (int(parts[2]) if len(parts) > 2 else 500)
        elif kind == "missing":
            status = 404
        elif kind == "slow":
            time.sleep(int(argument or 1000) / 1000)
            status = int(parts[2]) if len(parts) > 2 else 200
        elif kind == "hang":
            self._release.wait(120)
            return
        elif kind == "reset":
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            handler.connection.close()
            return
        elif kind == "throttle":
            _answer(handler, 429, b"slow down", {"Retry-After": "1"})
            return
        elif kind == "busy" and seen <= (int(parts[2]) if len(parts) > 2 else 1):
            _answer(handler, 503, b"busy", {"Retry-After": argument or "1"})
            return
        elif kind == "ratelimit":
            now = time.monotonic()
            with self._lock:
                recent = [at for at in self._recent.get(handler.path, []) if now - at < 1.0] + [now]
                self._recent[handler.path] = recent
            if len(recent) > int(argument or 2):
                _answer(handler, 429, b"rate limited", {"Retry-After": "1"})
                return
            status = 200
        elif kind == "redirect":
            _answer(handler, 302, b"", {"Location": "/ok"})
            return
        else:
            status = 200
        _answer(handler, status, b"ok" if status < 300 else b"target says no")


def _answer(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)
