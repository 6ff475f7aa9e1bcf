from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import step_handler
from functions.adapters.repository import MessageRepository
from functions.domain.config import get_settings
from functions.services.ingest import CORRELATION_ID_PATH, store
from functions.services.ingest_payloads import AnsweredState, ItemsState, StoredItem, validated_state


@step_handler(CORRELATION_ID_PATH)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> ItemsState[StoredItem] | AnsweredState:
    settings = get_settings()
    return store(validated_state(event), MessageRepository(settings.table_name), settings)
