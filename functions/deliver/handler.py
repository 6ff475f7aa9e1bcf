"""A lane's Deliver step: one attempt (functions/services/delivery/attempt.py)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, metrics, tracer
from functions.domain.config import get_settings
from functions.services.delivery import LaneEvent, attempt, dependencies


@logger.inject_lambda_context(correlation_id_path="messageId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return attempt(LaneEvent.from_event(event), dependencies(get_settings())).to_dict()
