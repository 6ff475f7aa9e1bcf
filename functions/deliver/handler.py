"""A lane's Deliver step: one attempt (functions/services/delivery/attempt.py)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import step_handler
from functions.domain.config import get_settings
from functions.services.delivery import LaneEvent, attempt, dependencies


@step_handler("messageId")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return attempt(LaneEvent.from_event(event), dependencies(get_settings())).to_dict()
