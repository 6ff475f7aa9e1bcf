"""IAM enforced on the embedded AWS: every call a handler or a state machine makes is checked.

moto answers any call from anyone; AWS answers only what the caller's role allows. To fail locally
exactly where AWS would, the local runtime
- runs each handler, each state machine execution and each call made for API Gateway under an
  identity (the role ARN from the template), held in a context variable (`acting_as`),
- checks every botocore call made under an identity against that role's statements from the
  template (`Authorizer.check`), before the call reaches moto, and raises the ClientError
  `AccessDeniedException` AWS would raise.
Calls made under no identity (test setup, the local server's own admin code) are not checked.

Policy evaluation follows AWS's rules for identity policies: an explicit Deny wins, otherwise an
Allow is needed; Action/NotAction and Resource/NotResource with `*` and `?` wildcards (actions
case-insensitively). Of conditions, `ForAllValues:StringLike` / `StringEquals` on
`dynamodb:LeadingKeys` (the partition keys of the items a DynamoDB call touches) is evaluated; an
Allow with any other Condition grants nothing locally, so a conditional grant shows up as an
AccessDenied rather than as a silent pass. moto's own access
control (moto.iam.access_control) is not used: it checks actions against `*` only and treats
ARNs as regular expressions.
"""

from __future__ import annotations

import contextvars
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from relay.local.template import ACCOUNT_ID, EVENT_BUS, FUNCTION, PARTITION, QUEUE, REGION, TABLE, arn

ACCESS_DENIED = "AccessDeniedException"

_identity: contextvars.ContextVar[str | None] = contextvars.ContextVar("relay_local_identity", default=None)


@contextmanager
def acting_as(role_arn: str | None) -> Iterator[None]:
    """Calls made in this block (in this thread) are made by `role_arn` (None: unchecked)."""
    token = _identity.set(role_arn)
    try:
        yield
    finally:
        _identity.reset(token)


def current_identity() -> str | None:
    return _identity.get()


# -- requests -> (action, resources) -----------------------------------------------------------------

# botocore's signing name -> IAM service prefix, where they differ.
_SERVICE_PREFIX = {"monitoring": "cloudwatch", "execute-api": "execute-api"}
# Operation -> IAM action name, where they differ.
_ACTION_NAMES = {
    ("lambda", "Invoke"): "InvokeFunction",
    ("lambda", "InvokeAsync"): "InvokeFunction",
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
}
_ITEM_OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem"})
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@dataclass(frozen=True)
class Request:
    """One IAM authorization: an action on a resource (for DynamoDB item calls, with the partition
    keys of the items it touches: `dynamodb:LeadingKeys`)."""

    action: str
    resource: str
    leading_keys: tuple[str, ...] | None = None


# The relay table's partition key attribute (stacks/constructs/storage.py).
_PARTITION_KEY = "pk"


def _leading_keys(*keys: dict[str, Any]) -> tuple[str, ...] | None:
    values = [key.get(_PARTITION_KEY, {}).get("S") for key in keys]
    return tuple(str(value) for value in values) if values and all(values) else None


def _dynamodb_table(name: str, index: str | None = None) -> str:
    table = name if name.startswith("arn:") else arn(TABLE, name)
    return f"{table}/index/{index}" if index else table


def _dynamodb(operation: str, params: dict[str, Any]) -> list[Request]:
    if operation == "BatchGetItem":
        return [
            Request(f"dynamodb:{operation}", _dynamodb_table(name), _leading_keys(*body.get("Keys", [])))
            for name, body in params.get("RequestItems", {}).items()
        ]
    if operation == "BatchWriteItem":
        return [Request(f"dynamodb:{operation}", _dynamodb_table(name)) for name in params.get("RequestItems", {})]
    if operation == "TransactWriteItems":
        return [
            # Each item is authorized as its own action, with its own partition key (LeadingKeys).
            Request(
                f"dynamodb:{_TRANSACT_ACTIONS[kind]}",
                _dynamodb_table(body["TableName"]),
                _leading_keys(body.get("Key") or body.get("Item") or {}),
            )
            for item in params.get("TransactItems", [])
            for kind, body in item.items()
        ]
    if operation == "TransactGetItems":
        return [Request("dynamodb:GetItem", _dynamodb_table(i["Get"]["TableName"])) for i in params["TransactItems"]]
    if "TableName" in params:
        item = params.get("Key") or params.get("Item")
        leading = _leading_keys(item) if operation in _ITEM_OPERATIONS and isinstance(item, dict) else None
        return [
            Request(f"dynamodb:{operation}", _dynamodb_table(params["TableName"], params.get("IndexName")), leading)
        ]
    return [Request(f"dynamodb:{operation}", "*")]


def _sqs_resource(params: dict[str, Any]) -> str:
    if "QueueUrl" in params:
        return arn(QUEUE, str(params["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1])
    if "QueueName" in params:
        return arn(QUEUE, str(params["QueueName"]))
    return "*"


def _states_resource(params: dict[str, Any]) -> str:
    for key in ("stateMachineArn", "executionArn", "activityArn", "resourceArn"):
        if key in params:
            return str(params[key])
    return "*"


def _secret_resource(params: dict[str, Any]) -> str:
    secret = str(params.get("SecretId") or params.get("Name") or "*")
    if secret.startswith("arn:") or secret == "*":
        return secret
    # Secrets Manager adds a dash and six random characters to every secret's ARN.
    return f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{secret}-AbCdEf"


def _lambda_resource(params: dict[str, Any]) -> str:
    name = str(params.get("FunctionName", "*"))
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:7])  # without a qualifier
    return arn(FUNCTION, name.split(":")[0])


def _events_resource(params: dict[str, Any]) -> str:
    """PutEvents is authorized on the bus each entry names (Relay puts one entry a call)."""
    buses = {str(entry.get("EventBusName") or "default") for entry in params.get("Entries", [])}
    if len(buses) != 1:
        return "*"
    (bus,) = buses
    return bus if bus.startswith("arn:") else arn(EVENT_BUS, bus)


_RESOURCES: dict[str, Callable[[dict[str, Any]], str]] = {
    "sqs": _sqs_resource,
    "states": _states_resource,
    "secretsmanager": _secret_resource,
    "lambda": _lambda_resource,
    "events": _events_resource,
}


def requests_for(signing_name: str, operation: str, params: dict[str, Any]) -> list[Request]:
    """The authorizations AWS makes for one API call."""
    service = _SERVICE_PREFIX.get(signing_name, signing_name)
    if service == "dynamodb":
        return _dynamodb(operation, params)
    action = f"{service}:{_ACTION_NAMES.get((service, operation), operation)}"
    resource = _RESOURCES.get(service, lambda _: "*")(params)
    return [Request(action, resource)]


# -- policy evaluation -------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    expression = re.escape(text).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(f"^{expression}$", re.IGNORECASE if ignore_case else 0)


def _as_list(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _matches(statement: dict[str, Any], key: str, value: str, ignore_case: bool) -> bool | None:
    """Whether `value` is covered by the statement's `key` (or its Not form); None when absent."""
    if key in statement:
        return any(_pattern(item, ignore_case).match(value) for item in _as_list(statement[key]))
    if f"Not{key}" in statement:
        return not any(_pattern(item, ignore_case).match(value) for item in _as_list(statement[f"Not{key}"]))
    return None


def _applies(statement: dict[str, Any], request: Request) -> bool:
    return bool(_matches(statement, "Action", request.action, True)) and bool(
        _matches(statement, "Resource", request.resource, False)
    )


def _condition_holds(condition: Any, request: Request) -> bool:
    """The one condition evaluated locally: every partition key the call touches matches a pattern
    (`ForAllValues:StringLike`/`StringEquals` on `dynamodb:LeadingKeys`); any other: False."""
    if not isinstance(condition, dict) or len(condition) != 1 or request.leading_keys is None:
        return False
    ((operator, tests),) = condition.items()
    if operator not in ("ForAllValues:StringLike", "ForAllValues:StringEquals") or set(tests) != {
        "dynamodb:LeadingKeys"
    }:
        return False
    patterns = _as_list(tests["dynamodb:LeadingKeys"])
    if operator.endswith("StringEquals"):
        return all(key in patterns for key in request.leading_keys)
    return all(any(_pattern(item, False).match(key) for item in patterns) for key in request.leading_keys)


def is_allowed(statements: tuple[dict[str, Any], ...], request: Request) -> bool:
    applicable = [statement for statement in statements if _applies(statement, request)]
    if any(statement.get("Effect") == "Deny" for statement in applicable):
        return False
    return any(
        statement.get("Effect") == "Allow"
        and ("Condition" not in statement or _condition_holds(statement["Condition"], request))
        for statement in applicable
    )


_MAX_DECISIONS = 10_000


class Authorizer:
    """The roles of one template, and the decisions made for them (cached: the same calls repeat)."""

    def __init__(self, policies: dict[str, tuple[dict[str, Any], ...]]) -> None:
        self.policies = policies
        self._decisions: dict[tuple[str, Request], bool] = {}
        self._lock = threading.Lock()

    def allows(self, role_arn: str, request: Request) -> bool:
        # Cached per action and resource; the items' keys matter only where a conditional statement
        # applies, and only those decisions are made afresh each call.
        key = (role_arn, Request(request.action, request.resource))
        decision = self._decisions.get(key)
        if decision is None:
            statements = self.policies.get(role_arn, ())
            decision = is_allowed(statements, request)
            if any("Condition" in statement for statement in statements if _applies(statement, key[1])):
                return decision
            with self._lock:
                if len(self._decisions) >= _MAX_DECISIONS:  # execution ARNs differ per run
                    self._decisions.clear()
                self._decisions[key] = decision
        return decision

    def check(self, role_arn: str, requests: list[Request], operation: str) -> None:
        for request in requests:
            if not self.allows(role_arn, request):
                raise access_denied(role_arn, request, operation)


def access_denied(role_arn: str, request: Request, operation: str) -> ClientError:
    role = role_arn.rsplit("/", 1)[-1]
    message = (
        f"User: arn:{PARTITION}:sts::{ACCOUNT_ID}:assumed-role/{role}/local is not authorized to perform: "
        f"{request.action} on resource: {request.resource} because no identity-based policy allows the "
        f"{request.action} action"
    )
    # moto's interpreter reads the request id of a failed task's error, as from any AWS answer.
    response: dict[str, Any] = {
        "Error": {"Code": ACCESS_DENIED, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 403, "RequestId": str(uuid.uuid4())},
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


# -- enforcement -------------------------------------------------------------------------------------

_active: list[Authorizer] = []
_install_lock = threading.Lock()
_installed = False


def enforce(authorizer: Authorizer) -> None:
    """Check calls against `authorizer` from now on (until `release`)."""
    _install()
    _active.append(authorizer)


def release(authorizer: Authorizer) -> None:
    if authorizer in _active:
        _active.remove(authorizer)


def authorize(operation: str, signing_name: str, params: dict[str, Any]) -> None:
    """Raise AccessDenied when the current identity may not make this call."""
    role = _identity.get()
    if role is None or not _active:
        return
    _active[-1].check(role, requests_for(signing_name, operation, params), operation)


def authorize_as(role_arn: str, operation: str, signing_name: str, params: dict[str, Any]) -> None:
    """Authorize a call a service makes with a role (API Gateway's integration credentials)."""
    with acting_as(role_arn):
        authorize(operation, signing_name, params)


def _install() -> None:
    """Wrap botocore's one entry point for API calls and moto's execution threads, once."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from botocore.client import BaseClient

        make_api_call = BaseClient._make_api_call  # type: ignore[attr-defined]

        def checked_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            if _identity.get() is not None:
                authorize(operation_name, self.meta.service_model.signing_name, api_params)
            return make_api_call(self, operation_name, api_params)

        BaseClient._make_api_call = checked_call  # type: ignore[attr-defined]
        _threads_inherit_identity()
        _run_executions_as_their_role()
        _installed = True


def _threads_inherit_identity() -> None:
    """A thread started (or a pool task submitted) under an identity acts with it.

    Lambda's credentials hold for every thread of a function; moto's interpreter also evaluates
    states in threads of its own. Context variables do not cross threads by themselves.
    """
    from concurrent.futures import ThreadPoolExecutor

    start = threading.Thread.start

    def start_with_identity(self: threading.Thread) -> None:
        identity = _identity.get()
        if identity is not None:
            run = self.run

            def run_as() -> None:
                with acting_as(identity):
                    run()

            self.run = run_as  # type: ignore[method-assign]
        start(self)

    submit = ThreadPoolExecutor.submit

    def submit_with_identity(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        identity = _identity.get()

        def call_as(*call_args: Any, **call_kwargs: Any) -> Any:
            with acting_as(identity):
                return fn(*call_args, **call_kwargs)

        return submit(self, call_as, *args, **kwargs)

    threading.Thread.start = start_with_identity  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = submit_with_identity  # type: ignore[method-assign,assignment]


def _run_executions_as_their_role() -> None:
    """A state machine's tasks call AWS with the machine's role, in moto's execution thread."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    execution_logic = ExecutionWorker._execution_logic

    def as_machine_role(self: Any) -> None:
        with acting_as(self._evaluation_details.aws_execution_details.role_arn):
            execution_logic(self)

    ExecutionWorker._execution_logic = as_machine_role  # type: ignore[method-assign]
