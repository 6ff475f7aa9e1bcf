"""Runs every minute (EventBridge; `relay dev` plays it): queues the delayed messages and fires the
cron schedules whose time is near (functions/services/scheduling/scheduler.py)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, metrics, tracer
from functions.adapters.queue import DeliveryQueue
from functions.adapters.stores.schedule_repository import ScheduleRepository
from functions.domain.config import get_settings
from functions.services.scheduling.scheduler import sweep


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    settings = get_settings()
    counts = sweep(ScheduleRepository(settings.table_name), DeliveryQueue(settings.queue_url), settings)
    logger.info("Swept the scheduler's shards", extra=counts)
    return counts
