"""A lane's MarkFailed and GiveBack steps (functions/services/delivery/lane_endings.py)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, metrics, tracer
from functions.domain.config import get_settings
from functions.services.delivery import LaneEvent, dependencies, finish_run


@logger.inject_lambda_context(correlation_id_path="messageId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return finish_run(LaneEvent.from_event(event), dependencies(get_settings())).to_dict()
