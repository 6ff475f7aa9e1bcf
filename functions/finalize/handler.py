from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.shared.config import get_settings
from functions.shared.delivery import dependencies, finish_run
from functions.shared.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="messageId")
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return finish_run(event, dependencies(get_settings()))
