"""The delivery queue's consumer: claims each queued message and makes its first attempt.

Thin on purpose: functions/services/delivery.dispatch_batch does the work, attempting the batch's
messages in parallel (the queue's visibility timeout and this function's timeout cover one
attempt plus bookkeeping: stacks/settings.py). A failed record is reported alone; SQS redelivers
just it (and dead-letters it after a few receives).
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import logger, metrics, tracer
from functions.domain.config import get_settings
from functions.services.delivery import QueuedRecord, dependencies, dispatch_batch


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = [_queued(record) for record in event.get("Records", [])]
    failed = dispatch_batch(records, dependencies(get_settings()))
    return {"batchItemFailures": [{"itemIdentifier": record_id} for record_id in failed]}


def _queued(record: dict[str, Any]) -> QueuedRecord:
    sent = record.get("attributes", {}).get("SentTimestamp")
    sent_at = datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None
    return QueuedRecord(str(record["messageId"]), str(record["body"]), sent_at)
