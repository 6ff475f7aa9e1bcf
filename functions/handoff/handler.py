"""The fast lane's MoveToSlowLane step (functions/services/delivery/lane_endings.py)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import step_handler
from functions.domain.config import get_settings
from functions.services.delivery import LaneEvent, dependencies, move_to_slow_lane


@step_handler("messageId")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return move_to_slow_lane(LaneEvent.from_event(event), dependencies(get_settings())).to_dict()
