from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, metrics, tracer
from functions.domain.config import get_settings
from functions.services.ingest import validate


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return validate(event, get_settings())
