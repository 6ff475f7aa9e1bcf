import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.shared.config import get_settings
from functions.shared.delivery import dependencies, dispatch
from functions.shared.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> str:
    return dispatch(json.loads(record.body), dependencies(get_settings()))


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A failed record is reported alone; SQS redelivers just it (and dead-letters it after a few).
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
