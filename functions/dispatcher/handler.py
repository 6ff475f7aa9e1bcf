"""The delivery queue's consumer: claims each queued message and makes its first attempt.

Thin on purpose: functions/services/delivery/dispatch.dispatch_batch does the work, attempting the
batch's messages in parallel (the queue's visibility timeout and this function's timeout cover one
attempt plus bookkeeping: stacks/settings.py). A failed record is reported alone; SQS redelivers
just it (and dead-letters it after a few receives), as it does a record it cannot read.
"""

from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, step_handler
from functions.domain.config import get_settings
from functions.services.delivery import PayloadInvalid, QueuedRecord, dependencies, dispatch_batch


@step_handler()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records, unreadable = [], []
    for record in SQSEvent(event).records:
        try:
            records.append(QueuedRecord.from_sqs(record))
        except PayloadInvalid:
            logger.exception("Dispatching a queued message failed", extra={"record": record.message_id})
            unreadable.append(record.message_id)
    failed = unreadable + dispatch_batch(records, dependencies(get_settings()))
    return {"batchItemFailures": [{"itemIdentifier": record_id} for record_id in failed]}
