from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, metrics, tracer
from functions.adapters.repository import MessageRepository
from functions.domain.config import get_settings
from functions.services.ingest import CORRELATION_ID_PATH, dedup


@logger.inject_lambda_context(correlation_id_path=CORRELATION_ID_PATH)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    return dedup(event, MessageRepository(settings.table_name), settings)
