"""The bulk replay machine's step: replay a run of pages of a job, or record that the job's run failed."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, step_handler
from functions.adapters.queue import DeliveryQueue
from functions.adapters.stores.replay_repository import ReplayRepository
from functions.domain.config import get_settings
from functions.services import replays


@step_handler()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    repository = ReplayRepository(settings.table_name)
    step = replays.ReplayStep.from_event(event)
    if step.fail:
        return replays.fail_job(repository, step)
    result = replays.replay_run(
        repository,
        DeliveryQueue(settings.queue_url),
        settings,
        step,
        remaining_ms=context.get_remaining_time_in_millis,
    )
    logger.info(
        "Replayed a run of pages",
        extra={"jobId": result.job_id, "pages": result.pages, "done": result.done, **result.counts},
    )
    return result.to_dict()
