"""API Gateway token authorizer: a Bearer token -> the sender it belongs to (cached by API Gateway)."""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerTokenEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, tracer
from functions.adapters.stores.senders import SenderRepository
from functions.domain.config import get_settings


def _bearer(header: str | None) -> str:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_source(data_class=APIGatewayAuthorizerTokenEvent)
def lambda_handler(event: APIGatewayAuthorizerTokenEvent, context: LambdaContext) -> dict[str, Any]:
    arn = event.parsed_arn
    principal = SenderRepository(get_settings().table_name).authenticate(_bearer(event.authorization_token))
    if principal is None:
        # API Gateway answers 401 for exactly this message.
        raise Exception("Unauthorized")
    policy = APIGatewayAuthorizerResponse(
        principal_id=principal.sender_id,
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
        context={"senderId": principal.sender_id},
        usage_identifier_key=principal.api_key,
    )
    # The policy covers the whole API so API Gateway's cache serves every route of this token.
    if principal.active:
        policy.allow_all_routes()
    else:
        policy.deny_all_routes()
    return policy.asdict()
