"""The clients delivery works with, built once per process and reused across warm invocations."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from functions.adapters import aws
from functions.adapters.queue import DeliveryQueue, MessageQueue
from functions.adapters.repository import MessageRepository
from functions.adapters.secrets import SigningSecrets
from functions.adapters.stores.target_store import TargetRepository
from functions.adapters.workflows import Workflows
from functions.domain.breaker import BreakerPolicy, TargetHealth
from functions.domain.config import Settings
from functions.domain.flow import LEASE_MARGIN_SECONDS, Target
from functions.services.targeting.flow_control import FlowControl
from functions.services.targeting.target_health import TargetBreaker

if TYPE_CHECKING:
    # The client (urllib3, TLS) is loaded only by the functions that deliver (see `client`).
    from functions.adapters.http_client import DeliveryClient
    from functions.services.reporting.outcomes import Reporter


@dataclass
class DeliveryDependencies:
    settings: Settings
    repository: MessageRepository
    workflows: Workflows
    secrets: SigningSecrets
    failed_queue: MessageQueue

    @cached_property
    def client(self) -> DeliveryClient:
        """Built on first use: only the functions that deliver load urllib3 and TLS (cold start)."""
        from functions.adapters.http_client import DeliveryClient

        return DeliveryClient(
            allow_private=self.settings.allow_private_targets,
            connect_timeout=self.settings.connect_timeout_seconds,
            total_timeout=self.settings.total_timeout_seconds,
            max_response_bytes=self.settings.max_response_bytes,
        )

    @cached_property
    def flow(self) -> FlowControl:
        """Per-target limits (functions/services/targeting/flow_control.py); free for a target without limits."""
        return FlowControl(
            TargetRepository(self.settings.table_name),
            Target(
                "*",
                self.settings.target_default_rate_per_second,
                self.settings.target_default_max_concurrency,
            ),
            lease_seconds=self.settings.total_timeout_seconds + LEASE_MARGIN_SECONDS,
        )

    @cached_property
    def delivery_queue(self) -> DeliveryQueue:
        """Where the dispatcher puts back a message whose target is at its limit, and where the
        messages Relay sends itself (callbacks, notifications) are enqueued."""
        return DeliveryQueue(self.settings.queue_url)

    @cached_property
    def reporter(self) -> Reporter:
        """Outcome callbacks and notifications (functions/services/reporting/outcomes.py)."""
        from functions.services.reporting.outcomes import Reporter

        return Reporter(self.settings, self.repository, self.delivery_queue)

    @cached_property
    def breaker(self) -> TargetBreaker:
        """Target health, cached in the warm function (functions/services/targeting/target_health.py)."""
        from functions.adapters.stores.target_health_store import TargetHealthRepository

        store = TargetHealthRepository.from_settings(self.settings)
        return TargetBreaker(store, BreakerPolicy.from_settings(self.settings), on_change=self._target_changed)

    def _target_changed(self, health: TargetHealth, opened: bool) -> None:
        from functions.services.reporting.outcomes import report_target

        report_target(self.reporter, health.sender_id, health.origin, opened, health.opened_at)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryDependencies:
        return cls(
            settings=settings,
            repository=MessageRepository(settings.table_name),
            workflows=Workflows(),
            secrets=SigningSecrets(),
            failed_queue=MessageQueue(settings.failed_queue_url),
        )


@lru_cache(maxsize=4)
def dependencies(settings: Settings) -> DeliveryDependencies:
    """One set of clients per process (and per settings), reused across warm invocations."""
    return DeliveryDependencies.from_settings(settings)


# They hold a secrets cache and clients of the AWS they were built for.
aws.on_reset(dependencies.cache_clear)
