"""`relay dev`: the embedded AWS, the HTTP API and the background workers, in one process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.contract.settings_names import Setting
from relay.admin import SenderAdmin
from relay.local.emulator import LocalAws
from relay.local.http_server import ServerLimits
from relay.local.server import RelayHttpServer, default_limits, new_admin_token
from relay.local.workers import QueueWorker, ScheduledWorker

DEV_SENDER = "dev"


@dataclass
class LocalRelay:
    host: str = "127.0.0.1"
    port: int = 8000
    time_scale: float = 1.0
    allow_private_targets: bool = True
    environment: dict[str, str] = field(default_factory=dict)
    # None: the retry policies of the template, as the deployment runs them.
    policy: dict[str, Any] | None = None
    # None: cdk.out/Relay.template.json, synthesized first when older than the sources.
    template: Path | None = None
    enforce_iam: bool = True
    local: LocalAws | None = None
    server: RelayHttpServer | None = None
    workers: list[QueueWorker] = field(default_factory=list)
    # None: the dispatcher's MaximumConcurrency from the template, as Lambda scales it. A smaller
    # number suits a small machine carrying a large backlog (the soak): each poller runs its
    # batch's records on threads, and a hundred of them only contend for two cores.
    dispatcher_pollers: int | None = None
    dev_secret: str = ""
    dev_token: str = ""
    # The credential of the /_admin routes (`relay senders ...`), new at every start.
    admin_token: str = field(default_factory=new_admin_token)
    # None: the HTTP server's defaults (relay/local/http_server.py); tests shorten the timeouts.
    server_limits: ServerLimits | None = None
    # The reconciler's schedule (rate(1 minute) on AWS), in real seconds.
    reconcile_every_seconds: float = 5.0
    reconciler: ScheduledWorker | None = None
    # The scheduler's schedule (rate(1 minute) on AWS), in real seconds: it queues delayed messages
    # and fires cron schedules ahead of their time, so a shorter tick changes no delivery time.
    schedule_every_seconds: float = 5.0
    scheduler: ScheduledWorker | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalRelay:
        environment = {
            Setting.ALLOW_PRIVATE_TARGETS: "true" if self.allow_private_targets else "false",
            Setting.REQUIRE_SENDER: "true",
            **self.environment,
        }
        self.local = LocalAws(
            time_scale=self.time_scale,
            environment=environment,
            delivery_policy=self.policy or {},
            template=self.template,
            enforce_iam=self.enforce_iam,
        ).start()
        created = SenderAdmin(self.local.table_name).create(DEV_SENDER)
        self.dev_token, self.dev_secret = created["token"], created["signingSecret"]
        self.workers = [
            QueueWorker(
                self.local, self.local.queue_urls[self.local.queue_name], max_pollers=self.dispatcher_pollers
            ).start()
        ]
        self.reconciler = ScheduledWorker(self.local, "relay-reconciler", self.reconcile_every_seconds).start()
        self.scheduler = ScheduledWorker(self.local, "relay-scheduler", self.schedule_every_seconds).start()
        limits = self.server_limits or default_limits()
        self.server = RelayHttpServer((self.host, self.port), self.local, admin_token=self.admin_token, limits=limits)
        self.server.serve_in_background()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        for worker in self.workers:
            worker.stop()
        if self.reconciler is not None:
            self.reconciler.stop()
            self.reconciler = None
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        self.workers = []
        if self.local is not None:
            self.local.stop()
            self.local = None

    def __enter__(self) -> LocalRelay:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
