"""moto at `relay dev`'s sizes: the same answers, without the passes over whole tables and queues.

moto is written for tests of a few items. Under a backlog of thousands of messages (the soak, a
user's real traffic in `relay dev`) most of the embedded AWS's time went to work that grows with
the table or the queue on every call; each patch here keeps moto's answer and drops that work. They
change speed only: what AWS does that moto does not (atomic conditional writes, Lambda's error
envelope, scaled time) is made up for in relay/local/emulator.py.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any


def install() -> None:
    """Every patch of this module (the embedded AWS installs them once, with its own)."""
    _reuse_interpreter_clients()
    _parse_each_definition_once()
    _scan_queues_once_per_receive()
    _query_one_partition()
    _item_results_as_plain_json()


def _parse_each_definition_once() -> None:
    """Parsing a definition is two thirds of a run's cost; programs keep per-run state in the
    evaluation environment, so one parsed program serves every execution of a definition."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend import execution_worker

    parse = AmazonStateLanguageParser.parse

    @lru_cache(maxsize=32)
    def cached_parse(definition: str) -> Any:
        return parse(definition)

    def entrypoint(worker: Any) -> Any:
        return cached_parse(worker._evaluation_details.state_machine_details.definition)[0]

    execution_worker.ExecutionWorker._get_evaluation_entrypoint = entrypoint  # type: ignore[method-assign,assignment]


def _query_one_partition() -> None:
    """moto answers a query by listing and sorting the whole table, then comparing every item's key
    to the one asked: at thousands of messages each of the reconciler's and scheduler's shard
    queries cost tens of ms, and `relay dev` spent most of its time there. The same query, handed
    only the items whose partition (or index partition) matches; moto still sorts, pages, filters
    and projects them itself."""
    import inspect

    from moto.dynamodb.models.table import Table

    original = Table.query
    signature = inspect.signature(original)

    def candidates(table: Table, arguments: dict[str, Any]) -> list[Any] | None:
        conditions = arguments.get("hash_key_conditions") or []
        if arguments.get("index_name") is None:
            partition = table.items.get(arguments["hash_key"]) if arguments.get("hash_key") is not None else None
            if partition is None:
                return []
            return list(partition.values()) if table.range_key_attr else [partition]
        if len(conditions) != 1:
            return None
        name, expected = conditions[0]
        found = []
        partitions: list[Any] = list(table.items.values())
        for partition in partitions:
            for item in partition.values() if table.range_key_attr else [partition]:
                value = item.attrs.get(name)
                if value is not None and value.type == expected.type and value.value == expected.value:
                    found.append(item)
        return found

    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        matching = candidates(self, arguments)
        if matching is None:
            return original(self, *args, **kwargs)
        # Every DynamoDB call holds one lock (_serialise_dynamodb_writes): no other call sees this.
        self.all_items = lambda: matching  # type: ignore[method-assign]
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query  # type: ignore[method-assign]


# DynamoDB calls whose answers are items and counts only (no timestamps): plain JSON says them as the
# service does; binary attributes (a message's compressed content) go as base64.
_ITEM_ACTIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)


def _item_results_as_plain_json() -> None:
    """moto writes each DynamoDB answer by walking the operation's output shape, member by member:
    a fifth of `relay dev`'s time under a backlog went to writing heads back to their callers. An
    item answer is already DynamoDB's JSON, so it is written with `json.dumps` (botocore reads only
    the members its shape has; errors and table descriptions keep moto's own path)."""
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    shaped = DynamoHandler.serialized

    def serialized(self: DynamoHandler, action_result: Any) -> Any:
        if type(action_result) is not DynamoResult or self._get_action() not in _ITEM_ACTIONS:
            return shaped(self, action_result)
        body = json.dumps(action_result.result, default=_base64_bytes)
        headers = {"Content-Type": "application/x-amz-json-1.0", **self.response_headers, "status": 200}
        return 200, headers, body

    DynamoHandler.serialized = serialized  # type: ignore[method-assign,assignment]


def _base64_bytes(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _scan_queues_once_per_receive() -> None:
    """moto asks each message of a queue the time twice to find what is receivable, and once more
    per message for each approximate count, which it computes for every message it hands out (to
    read the retention period). With a backlog of thousands (delayed, waiting for their turn) a
    receive cost ~85 ms of CPU per scan and `relay dev`'s pollers spent its time there. The same
    tests, with the clock read once per scan."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Message, Queue

    def receivable(self: Queue) -> list[Message]:
        now = unix_time_millis()
        return [message for message in self._messages if message.visible_at < now and message.delayed_until <= now]

    def delayed(self: Queue) -> int:
        now = unix_time_millis()
        return sum(1 for message in self._messages if now < message.delayed_until)

    def not_visible(self: Queue) -> int:
        now = unix_time_millis()
        return sum(1 for message in self._messages if now <= message.visible_at)

    Queue.messages = property(receivable)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_delayed = property(delayed)  # type: ignore[method-assign,assignment]
    Queue.approximate_number_of_messages_not_visible = property(not_visible)  # type: ignore[method-assign,assignment]
    _read_queue_attributes_when_asked()


def _read_queue_attributes_when_asked() -> None:
    """moto builds every attribute of a queue (each approximate count a pass over its messages)
    whenever it needs one: for each message sent (ContentBasedDeduplication) and three times for
    each message received (its retention period). With thousands of messages waiting for their
    turn that is most of a send's and a receive's cost. The same attributes, each computed when read."""
    from moto.sqs.models import Queue, SQSBackend

    def attributes(self: Queue) -> _QueueAttributes:
        return _QueueAttributes(self)

    def retained(self: SQSBackend, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).attributes["MessageRetentionPeriod"])
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    Queue.attributes = property(attributes)  # type: ignore[method-assign,assignment]
    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]


class _QueueAttributes(Mapping[str, Any]):
    """A queue's attributes as moto's `Queue.attributes` lists them, each read from the queue on access."""

    def __init__(self, queue: Any) -> None:
        from moto.core.utils import camelcase_to_underscores

        self._queue = queue
        self._attribute = camelcase_to_underscores
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        optional = (("Policy", queue.policy), ("RedrivePolicy", queue.redrive_policy))
        names += [name for name, present in optional if present]
        self._names = dict.fromkeys(names)

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name == "Policy":
            return self._queue.policy
        if name == "RedrivePolicy":
            return json.dumps(self._queue.redrive_policy)
        value = getattr(self._queue, self._attribute(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _reuse_interpreter_clients() -> None:
    """moto's interpreter builds a new boto3 Lambda client for every Lambda task it runs (a sixth of
    relay dev's time); one client per (region, service) serves them all, as boto3 clients are
    thread-safe. IAM still sees each call as its caller's (relay/local/iam.py checks per call)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    build = lambda_eval_utils.boto_client_for
    clients: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        with lock:
            if (region, service) not in clients:
                clients[(region, service)] = build(region=region, service=service, state_credentials=state_credentials)
            return clients[(region, service)]

    lambda_eval_utils.boto_client_for = boto_client_for  # type: ignore[assignment]
