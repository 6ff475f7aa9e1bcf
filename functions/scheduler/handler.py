"""Runs every minute (EventBridge; `relay dev` plays it): queues the delayed messages and fires the
cron schedules whose time is near (functions/services/scheduling/scheduler.py)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, step_handler
from functions.adapters.queue import DeliveryQueue
from functions.adapters.stores.schedule_repository import ScheduleRepository
from functions.domain.config import get_settings
from functions.services.scheduling.scheduler import sweep


@step_handler()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    settings = get_settings()
    counts = sweep(ScheduleRepository(settings.table_name), DeliveryQueue(settings.queue_url), settings)
    logger.info("Swept the scheduler's shards", extra=counts)
    return counts
