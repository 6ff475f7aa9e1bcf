from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import step_handler
from functions.domain.config import get_settings
from functions.services.ingest import validate
from functions.services.ingest_payloads import AnsweredState, IngestRequest, ItemsState, ValidatedItem


@step_handler()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> ItemsState[ValidatedItem] | AnsweredState:
    return validate(IngestRequest.from_event(event), get_settings())
