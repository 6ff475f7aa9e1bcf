"""Runs on a schedule: re-drives messages that are overdue with no live run."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, step_handler
from functions.adapters.queue import DeliveryQueue, MessageQueue
from functions.domain.config import get_settings
from functions.domain.model import MessageKey
from functions.services.delivery import LaneEvent, dependencies, fail_message
from functions.services.reconciler import ROUND_BUDGET_SECONDS, RoundBudget, reconcile

# Left of the invocation's time when the round stops starting new work (its last writes finish).
ROUND_MARGIN_SECONDS = 8


@step_handler()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    settings = get_settings()
    deps = dependencies(settings)
    dead_letters = MessageQueue(settings.dead_letter_queue_url) if settings.dead_letter_queue_url else None

    def fail(key: MessageKey, run: int, reason: str) -> None:
        fail_message(LaneEvent(key, run, reason=reason), deps)

    counts = reconcile(
        deps.repository,
        DeliveryQueue(settings.queue_url),
        settings,
        fail,
        dead_letters=dead_letters,
        budget=RoundBudget(_budget_seconds(context)),
    )
    logger.info("Reconciled", extra=counts)
    return counts


def _budget_seconds(context: LambdaContext) -> float:
    try:
        left = context.get_remaining_time_in_millis() / 1000
    except (AttributeError, TypeError):  # a local invocation without a real context
        return ROUND_BUDGET_SECONDS
    return max(1.0, min(ROUND_BUDGET_SECONDS, left - ROUND_MARGIN_SECONDS))
