"""`relay dev`: the embedded AWS, the HTTP API and the background workers, in one process."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.local.emulator import LocalAws
from relay.local.server import RelayHttpServer


@dataclass
class LocalRelay:
    host: str = "127.0.0.1"
    port: int = 8000
    time_scale: float = 1.0
    allow_private_targets: bool = True
    environment: dict[str, str] = field(default_factory=dict)
    local: LocalAws | None = None
    server: RelayHttpServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalRelay:
        environment = {
            "RELAY_ALLOW_PRIVATE_TARGETS": "true" if self.allow_private_targets else "false",
            **self.environment,
        }
        self.local = LocalAws(time_scale=self.time_scale, environment=environment).start()
        self.server = RelayHttpServer((self.host, self.port), self.local)
        self.server.serve_in_background()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.local is not None:
            self.local.stop()
            self.local = None

    def __enter__(self) -> LocalRelay:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
