"""The data-access layer of bulk replays: matching messages by status and time, and the job records.

- Matching reads the sparse `byStatus` index (functions/shared/repository.py): partition
  `SENDER#<s>#STATUS#<status>`, sort key `<epoch ms of the change>#<messageId>`, so one key
  condition selects a time window, oldest first. The index holds keys only; the messages are read
  by key (with their content when the filter names an origin).
- A job is one item, `pk = REPLAY#<senderId>`, `sk = <jobId>`: its filter, state and counters.
  Each page of the job adds its counts in ONE conditional update that also moves the page number
  on, so a page the state machine retries is not counted twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from functions.shared.key_prefixes import REPLAY_JOB_PREFIX
from functions.shared.model import MessageKey, Status, epoch_ms
from functions.shared.repository import STATUS_INDEX, MessageRepository, _status_partition, from_item, to_item

JOB_PARTITION_PREFIX = REPLAY_JOB_PREFIX
# Every character of a messageId sorts before "~", so "<ms>#~" ends the window's last millisecond.
_AFTER_ANY_ID = "~"
# Epoch milliseconds have 13 digits from 2001 to 2286: the sort keys compare as numbers within it.
_EARLIEST_MS = 10**12


def _job_key(sender_id: str, job_id: str) -> dict[str, Any]:
    return to_item({"pk": f"{JOB_PARTITION_PREFIX}{sender_id}", "sk": job_id})


class ReplayRepository(MessageRepository):
    """MessageRepository plus the replay window query and the job records (same table)."""

    # -- matching --------------------------------------------------------------------------------

    def status_window(
        self,
        sender_id: str,
        status: Status,
        since: datetime,
        until: datetime,
        limit: int | None,
        cursor: dict[str, Any] | None,
    ) -> tuple[list[MessageKey], dict[str, Any] | None]:
        """Keys of a sender's messages that reached `status` within [since, until], oldest first,
        and the cursor of the next page (None at the end). `limit=None`: as many as one page holds."""
        low = f"{max(epoch_ms(since), _EARLIEST_MS)}#"
        high = f"{max(epoch_ms(until), _EARLIEST_MS)}#{_AFTER_ANY_ID}"
        kwargs: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": to_item(
                {":pk": _status_partition(sender_id, status), ":low": low, ":high": high}
            ),
            "ScanIndexForward": True,
        }
        if limit is not None:
            kwargs["Limit"] = limit
        if cursor:
            kwargs["ExclusiveStartKey"] = to_item(cursor)
        response = self._call("query", **kwargs)
        keys = []
        for item in response.get("Items", []):
            _, sender, message_id = str(from_item(item)["pk"]).split("#", 2)
            keys.append(MessageKey(sender, message_id))
        last = response.get("LastEvaluatedKey")
        return keys, (from_item(last) if last else None)

    # -- jobs ------------------------------------------------------------------------------------

    def create_job(
        self, sender_id: str, job_id: str, job_filter: dict[str, Any], matched: int, state: str, now: datetime, ttl: int
    ) -> None:
        item = {
            "filter": job_filter,
            "matched": matched,
            "replayed": 0,
            "skipped": 0,
            "failed": 0,
            "page": 0,
            "state": state,
            "createdAt": epoch_ms(now),
            "updatedAt": epoch_ms(now),
            "ttl": ttl,
        }
        self._call(
            "put_item",
            Item={**_job_key(sender_id, job_id), **to_item(item)},
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get_job(self, sender_id: str, job_id: str) -> dict[str, Any] | None:
        item = self._call("get_item", Key=_job_key(sender_id, job_id), ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def record_page(
        self, sender_id: str, job_id: str, page: int, counts: dict[str, int], state: str, now: datetime
    ) -> bool:
        """Add one page's counts and set the job's state; False when that page was already counted."""
        names = {"#page": "page", "#state": "state", "#updated": "updatedAt"}
        values: dict[str, Any] = {":page": page, ":next": page + 1, ":state": state, ":now": epoch_ms(now)}
        adds = []
        for name, amount in counts.items():
            names[f"#{name}"] = name
            values[f":{name}"] = amount
            adds.append(f"#{name} :{name}")
        try:
            self._call(
                "update_item",
                Key=_job_key(sender_id, job_id),
                UpdateExpression="SET #page = :next, #state = :state, #updated = :now ADD " + ", ".join(adds),
                ConditionExpression="attribute_exists(pk) AND #page = :page",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def set_job_state(self, sender_id: str, job_id: str, state: str, now: datetime, reason: str | None = None) -> None:
        names = {"#state": "state", "#updated": "updatedAt"}
        values: dict[str, Any] = {":state": state, ":now": epoch_ms(now)}
        expression = "SET #state = :state, #updated = :now"
        if reason:
            names["#reason"] = "reason"
            values[":reason"] = reason[:500]
            expression += ", #reason = :reason"
        self._call(
            "update_item",
            Key=_job_key(sender_id, job_id),
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )
