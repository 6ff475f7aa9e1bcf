"""Runs on a schedule: re-drives messages that are overdue with no live run."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.shared.config import get_settings
from functions.shared.delivery import dependencies, fail_message
from functions.shared.observability import logger, metrics, tracer
from functions.shared.operations import reconcile
from functions.shared.queue import DeliveryQueue, MessageQueue
from functions.shared.senders import SenderRepository


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    settings = get_settings()
    deps = dependencies(settings)
    dead_letters = MessageQueue(settings.dead_letter_queue_url) if settings.dead_letter_queue_url else None
    counts = reconcile(
        deps.repository,
        DeliveryQueue(settings.queue_url),
        settings,
        lambda failed: fail_message(failed, deps),
        dead_letters=dead_letters,
        sender_ids=lambda: [str(sender["senderId"]) for sender in SenderRepository(settings.table_name).list_all()],
    )
    logger.info("Reconciled", extra=counts)
    return counts
