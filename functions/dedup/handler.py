from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import step_handler
from functions.adapters.repository import MessageRepository
from functions.domain.config import get_settings
from functions.services.ingest import CORRELATION_ID_PATH, dedup
from functions.services.ingest_payloads import AnsweredState, ItemsState, ValidatedItem, validated_state


@step_handler(CORRELATION_ID_PATH)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> ItemsState[ValidatedItem] | AnsweredState:
    settings = get_settings()
    return dedup(validated_state(event), MessageRepository(settings.table_name), settings)
