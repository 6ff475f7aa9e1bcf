"""What `relay dev` runs, read from the synthesized CloudFormation template.

The template is the one description of the system: functions (handler, environment, role), state
machines (definition with its substitutions, type, role), queues (visibility, redrive), the table
(keys, indexes, TTL), the usage plans (throttle, tags) and every IAM policy come from it, so
nothing is described twice. A small
resolver evaluates the intrinsics CDK writes (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select,
Fn::Split and the pseudo parameters), giving every resource the local name and ARN it has on the
embedded AWS.

Local names are derived, not listed: a function is `relay-<its handler's package>`, a state
machine is named after its execution log group (`/aws/vendedlogs/states/Relay-ingest` ->
`relay-ingest`), a queue after the environment variable that hands its URL to the functions
(`QUEUE_VARIABLES`), a dead-letter queue after the queue it serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from functions.contract.settings_names import Setting
from relay.local.topology import (
    FunctionSpec,
    QueueConsumerSpec,
    QueueSpec,
    StateMachineSpec,
    TableSpec,
    Topology,
    UsagePlanSpec,
)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PARTITION = "aws"
PREFIX = "relay"
DEFAULT_TABLE_NAME = "relay-local"
# Queue URL variable -> the queue's local name.
QUEUE_VARIABLES = {Setting.QUEUE_URL: "relay-delivery", Setting.FAILED_QUEUE_URL: "relay-failed"}
DEAD_LETTER_SUFFIX = "-dlq"
_PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
}
_LOGICAL_HASH = re.compile(r"[0-9A-F]{8}$")
_SUB_TOKEN = re.compile(r"\$\{([^}!]+)\}")

FUNCTION = "AWS::Lambda::Function"
STATE_MACHINE = "AWS::StepFunctions::StateMachine"
QUEUE = "AWS::SQS::Queue"
TABLE = "AWS::DynamoDB::Table"
ROLE = "AWS::IAM::Role"
POLICY = "AWS::IAM::Policy"
MANAGED_POLICY = "AWS::IAM::ManagedPolicy"
LOG_GROUP = "AWS::Logs::LogGroup"
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
# Lambda's defaults when a mapping does not set them (a mapping without ScalingConfig may scale up
# to the function's concurrency; locally that is bounded by this).
DEFAULT_BATCH_SIZE = 10
UNCAPPED_LOCAL_POLLERS = 10
USAGE_PLAN = "AWS::ApiGateway::UsagePlan"
EVENT_BUS = "AWS::Events::EventBus"


class TemplateError(ValueError):
    """The template uses something the local runtime cannot run."""


# Where each resource type's ARN differs: its service and its resource part (`{}`: the local name).
# The rest is the same for all: the partition, the region (none for IAM) and the account.
_ARN_PARTS: dict[str, tuple[str, str]] = {
    FUNCTION: ("lambda", "function:{}"),
    STATE_MACHINE: ("states", "stateMachine:{}"),
    QUEUE: ("sqs", "{}"),
    TABLE: ("dynamodb", "table/{}"),
    ROLE: ("iam", "role/{}"),
    LOG_GROUP: ("logs", "log-group:{}:*"),
    MANAGED_POLICY: ("iam", "policy/{}"),
    EVENT_BUS: ("events", "event-bus/{}"),
}


def arn(resource_type: str, name: str) -> str:
    """The ARN a resource of `resource_type` (a CloudFormation type) named `name` has on the
    embedded AWS."""
    default_service = resource_type.split("::")[1].lower() if resource_type.count("::") == 2 else "unknown"
    service, resource = _ARN_PARTS.get(resource_type, (default_service, "{}"))
    region = "" if service == "iam" else REGION
    return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT_ID}:{resource.format(name)}"


def queue_url(name: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{name}"


def _stem(logical_id: str) -> str:
    return _LOGICAL_HASH.sub("", logical_id)


class Template:
    """One template's resources, their local names, and the intrinsics resolved against them."""

    def __init__(self, document: dict[str, Any], table_name: str = DEFAULT_TABLE_NAME) -> None:
        self.resources: dict[str, dict[str, Any]] = document.get("Resources", {})
        self.table_name = table_name
        self.names: dict[str, str] = {}
        self._name_resources()

    # -- names --------------------------------------------------------------------------------------

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.resources.items() if value.get("Type") == resource_type}

    def _name_resources(self) -> None:
        for logical_id, resource in self.resources.items():
            self.names[logical_id] = self._explicit_name(resource) or _stem(logical_id)
        for logical_id, resource in self.of_type(FUNCTION).items():
            self.names[logical_id] = self._function_name(logical_id, resource)
        for logical_id, resource in self.of_type(STATE_MACHINE).items():
            self.names[logical_id] = self._machine_name(logical_id, resource)
        for logical_id in self.of_type(TABLE):
            self.names[logical_id] = self.table_name
        self._name_queues()

    @staticmethod
    def _explicit_name(resource: dict[str, Any]) -> str | None:
        properties = resource.get("Properties", {})
        for key in ("FunctionName", "StateMachineName", "QueueName", "TableName", "RoleName", "LogGroupName"):
            if isinstance(properties.get(key), str):
                return str(properties[key])
        return None

    def _function_name(self, logical_id: str, resource: dict[str, Any]) -> str:
        properties = resource.get("Properties", {})
        if isinstance(properties.get("FunctionName"), str):
            return str(properties["FunctionName"])
        parts = str(properties.get("Handler", "")).split(".")
        return f"{PREFIX}-{parts[1]}" if len(parts) >= 3 and parts[0] == "functions" else _stem(logical_id)

    def _machine_name(self, logical_id: str, resource: dict[str, Any]) -> str:
        properties = resource.get("Properties", {})
        if isinstance(properties.get("StateMachineName"), str):
            return str(properties["StateMachineName"])
        for destination in properties.get("LoggingConfiguration", {}).get("Destinations", []):
            log_arn = destination.get("CloudWatchLogsLogGroup", {}).get("LogGroupArn", {})
            group = self.resources.get(log_arn.get("Fn::GetAtt", [""])[0], {}) if isinstance(log_arn, dict) else {}
            group_name = group.get("Properties", {}).get("LogGroupName")
            if isinstance(group_name, str):
                return group_name.rsplit("/", 1)[-1].lower()
        return _stem(logical_id)

    def _name_queues(self) -> None:
        for resource in self.of_type(FUNCTION).values():
            variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
            for variable, local_name in QUEUE_VARIABLES.items():
                reference = variables.get(variable)
                if isinstance(reference, dict) and reference.get("Ref") in self.resources:
                    self.names[reference["Ref"]] = local_name
        for logical_id, resource in self.of_type(QUEUE).items():
            target = resource.get("Properties", {}).get("RedrivePolicy", {}).get("deadLetterTargetArn", {})
            if isinstance(target, dict) and "Fn::GetAtt" in target:
                self.names[target["Fn::GetAtt"][0]] = self.names[logical_id] + DEAD_LETTER_SUFFIX

    # -- intrinsics ---------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            function = self._INTRINSICS.get(key)
            if function is not None:
                return function(self, argument)
            if key.startswith("Fn::"):
                raise TemplateError(f"the local runtime does not resolve {key}")
        return {key: self.resolve(item) for key, item in value.items()}

    def _ref(self, name: str) -> str:
        if name in _PSEUDO:
            return _PSEUDO[name]
        resource = self.resources.get(name)
        if resource is None:
            raise TemplateError(f"Ref to unknown resource {name}")
        local_name = self.names[name]
        resource_type = resource.get("Type")
        if resource_type == QUEUE:
            return queue_url(local_name)
        if resource_type == STATE_MACHINE:
            return arn(STATE_MACHINE, local_name)
        return local_name

    def _get_att(self, argument: Any) -> str:
        logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"Fn::GetAtt of unknown resource {logical_id}")
        name = self.names[logical_id]
        resource_type = str(resource.get("Type"))
        if attribute == "Arn":
            return arn(resource_type, name)
        simple = {"QueueName": name, "Name": name, "QueueUrl": queue_url(name), "RoleId": name}
        if attribute in simple:
            return simple[attribute]
        raise TemplateError(f"the local runtime does not resolve Fn::GetAtt {logical_id}.{attribute}")

    def _join(self, argument: Any) -> str:
        separator, items = argument
        return str(separator).join(str(item) for item in self.resolve(items))

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {key: self.resolve(item) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token in values:
                return str(values[token])
            if "." in token and token not in _PSEUDO:
                return self._get_att(token)
            return self._ref(token)

        return _SUB_TOKEN.sub(replace, text)

    def _select(self, argument: Any) -> Any:
        index, items = argument
        return self.resolve(items)[int(self.resolve(index))]

    def _split(self, argument: Any) -> list[str]:
        separator, text = argument
        return str(self.resolve(text)).split(separator)

    _INTRINSICS: dict[str, Callable[[Template, Any], Any]] = {
        "Ref": _ref,
        "Fn::GetAtt": _get_att,
        "Fn::Join": _join,
        "Fn::Sub": _sub,
        "Fn::Select": _select,
        "Fn::Split": _split,
    }


# -- the topology -------------------------------------------------------------------------------------


def _functions(template: Template) -> dict[str, FunctionSpec]:
    functions = {}
    for logical_id, resource in template.of_type(FUNCTION).items():
        properties = resource["Properties"]
        variables = template.resolve(properties.get("Environment", {}).get("Variables", {}))
        name = template.names[logical_id]
        functions[name] = FunctionSpec(
            name=name,
            handler=str(properties["Handler"]),
            environment={key: str(value) for key, value in variables.items()},
            role_arn=str(template.resolve(properties["Role"])),
        )
    return functions


def _definition(template: Template, properties: dict[str, Any]) -> str:
    if "DefinitionString" in properties:
        text = str(template.resolve(properties["DefinitionString"]))
    elif "Definition" in properties:
        text = json.dumps(template.resolve(properties["Definition"]))
    else:
        raise TemplateError("a state machine without an inline definition (DefinitionS3Location) cannot run locally")
    for key, value in template.resolve(properties.get("DefinitionSubstitutions", {})).items():
        text = text.replace("${" + key + "}", str(value))
    return text


def _state_machines(template: Template) -> dict[str, StateMachineSpec]:
    machines = {}
    for logical_id, resource in template.of_type(STATE_MACHINE).items():
        properties = resource["Properties"]
        name = template.names[logical_id]
        machines[name] = StateMachineSpec(
            name=name,
            definition=_definition(template, properties),
            type=str(properties.get("StateMachineType", "STANDARD")),
            role_arn=str(template.resolve(properties["RoleArn"])),
        )
    return machines


_QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds")


def _queues(template: Template) -> dict[str, QueueSpec]:
    """Queues in creation order: a dead-letter queue before the queue that redrives to it."""
    queues: dict[str, QueueSpec] = {}
    for logical_id, resource in sorted(
        template.of_type(QUEUE).items(), key=lambda item: "RedrivePolicy" in item[1].get("Properties", {})
    ):
        properties = template.resolve(resource.get("Properties", {}))
        attributes = {key: str(properties[key]) for key in _QUEUE_ATTRIBUTES if key in properties}
        redrive = properties.get("RedrivePolicy")
        dead_letters = None
        if redrive:
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": redrive["deadLetterTargetArn"],
                    "maxReceiveCount": str(redrive["maxReceiveCount"]),
                }
            )
            dead_letters = str(redrive["deadLetterTargetArn"]).rsplit(":", 1)[-1]
        name = template.names[logical_id]
        queues[name] = QueueSpec(name=name, attributes=attributes, dead_letter_queue=dead_letters)
    return queues


def _queue_consumers(template: Template) -> dict[str, QueueConsumerSpec]:
    consumers = {}
    for resource in template.of_type(EVENT_SOURCE_MAPPING).values():
        properties = template.resolve(resource["Properties"])
        queue = str(properties["EventSourceArn"]).rsplit(":", 1)[-1]
        scaling = properties.get("ScalingConfig", {})
        consumers[queue] = QueueConsumerSpec(
            queue=queue,
            function=str(properties["FunctionName"]).rsplit(":", 1)[-1],
            batch_size=int(properties.get("BatchSize", DEFAULT_BATCH_SIZE)),
            max_concurrency=int(scaling.get("MaximumConcurrency", UNCAPPED_LOCAL_POLLERS)),
        )
    return consumers


def _table(template: Template) -> TableSpec:
    tables = template.of_type(TABLE)
    if len(tables) != 1:
        raise TemplateError(f"the local runtime runs one table; the template has {len(tables)}")
    logical_id, resource = next(iter(tables.items()))
    properties = template.resolve(resource["Properties"])
    definition: dict[str, Any] = {
        "TableName": template.names[logical_id],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
    }
    indexes = [
        {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
        for index in properties.get("GlobalSecondaryIndexes", [])
    ]
    if indexes:
        definition["GlobalSecondaryIndexes"] = indexes
    ttl = properties.get("TimeToLiveSpecification", {})
    return TableSpec(definition=definition, ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") else None)


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return list(statements) if isinstance(statements, list) else [statements]


def _policies(template: Template) -> dict[str, tuple[dict[str, Any], ...]]:
    """Role ARN -> statements of its inline policies, AWS::IAM::Policy and customer managed policies.

    AWS managed policies (arn:aws:iam::aws:policy/...) are not in the template; a role that needs
    one for a call the local runtime makes is reported by that call's AccessDenied.
    """
    attached: dict[str, list[dict[str, Any]]] = {}
    roles = {logical_id: arn(ROLE, template.names[logical_id]) for logical_id in template.of_type(ROLE)}
    for logical_id, resource in template.of_type(ROLE).items():
        statements = attached.setdefault(roles[logical_id], [])
        for policy in resource.get("Properties", {}).get("Policies", []):
            statements.extend(_statements(template.resolve(policy["PolicyDocument"])))
    for resource_type in (POLICY, MANAGED_POLICY):
        for resource in template.of_type(resource_type).values():
            properties = resource["Properties"]
            document = template.resolve(properties["PolicyDocument"])
            for role in properties.get("Roles", []):
                role_name = template.resolve(role)
                attached.setdefault(arn(ROLE, role_name), []).extend(_statements(document))
    return {role: tuple(statements) for role, statements in attached.items()}


def _api_start_role(template: Template) -> str | None:
    """The credentials role of the API method whose integration calls StartSyncExecution."""
    for resource in template.of_type("AWS::ApiGateway::Method").values():
        integration = template.resolve(resource["Properties"].get("Integration", {}))
        if "StartSyncExecution" in str(integration.get("Uri", "")) and integration.get("Credentials"):
            return str(integration["Credentials"])
    return None


def _usage_plans(template: Template) -> tuple[UsagePlanSpec, ...]:
    plans = []
    for logical_id, resource in template.of_type(USAGE_PLAN).items():
        properties = template.resolve(resource.get("Properties", {}))
        throttle = properties.get("Throttle") or {}
        plans.append(
            UsagePlanSpec(
                name=str(properties.get("UsagePlanName") or template.names[logical_id]),
                throttle={name[0].lower() + name[1:]: value for name, value in throttle.items()},
                tags={str(tag["Key"]): str(tag["Value"]) for tag in properties.get("Tags", [])},
            )
        )
    return tuple(plans)


def build_topology(document: dict[str, Any], table_name: str = DEFAULT_TABLE_NAME) -> Topology:
    template = Template(document, table_name)
    return Topology(
        functions=_functions(template),
        state_machines=_state_machines(template),
        queues=_queues(template),
        table=_table(template),
        policies=_policies(template),
        api_start_role_arn=_api_start_role(template),
        queue_consumers=_queue_consumers(template),
        usage_plans=_usage_plans(template),
        event_buses=tuple(template.names[logical_id] for logical_id in template.of_type(EVENT_BUS)),
    )


@lru_cache(maxsize=8)
def _cached_topology(path: str, modified: float, table_name: str) -> Topology:
    return build_topology(json.loads(Path(path).read_text(encoding="utf-8")), table_name)


def load_topology(path: Path, table_name: str = DEFAULT_TABLE_NAME) -> Topology:
    """The template at `path`, read and resolved once per version of the file."""
    return _cached_topology(str(path.resolve()), path.stat().st_mtime, table_name)


class TemplateEnvironmentConflict(ValueError):
    """Two functions set one variable differently; in one process they share os.environ."""


def shared_environment(topology: Topology) -> dict[str, str]:
    """Every function's environment from the template, as one (the handlers share a process)."""
    merged: dict[str, str] = {}
    for spec in topology.functions.values():
        for name, value in spec.environment.items():
            if merged.setdefault(name, value) != value:
                raise TemplateEnvironmentConflict(f"functions set {name} to both {merged[name]!r} and {value!r}")
    return merged
