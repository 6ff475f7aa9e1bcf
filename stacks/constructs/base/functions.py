"""How every Relay Lambda is built: one code asset, one dependency layer, one role per function.

Every function logs JSON (Lambda's advanced logging controls): Lambda's own lines (START, END,
REPORT, platform events) only at WARN and above, the function's at `relay.applicationLogLevel`
(INFO by default). Lambda passes that level to the runtime as AWS_LAMBDA_LOG_LEVEL, which
Powertools' Logger takes over POWERTOOLS_LOG_LEVEL, so the two cannot disagree; the functions set
no POWERTOOLS_LOG_LEVEL (`relay dev`, which runs them in one process, keeps its own). Lambda does
not re-encode a line that is JSON already, so Powertools' log lines and its EMF metric lines reach
CloudWatch Logs as written and CloudWatch still extracts the metrics; an EMF line has no "level",
so Lambda counts it as INFO, which is why the application level may not be quieter than INFO
(stacks/settings.APPLICATION_LOG_LEVELS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.contract.key_prefixes import MESSAGE_PREFIX
from functions.contract.metric_names import NAMESPACE, SERVICE_NAME
from functions.contract.settings_names import Setting
from stacks.nag import acknowledge
from stacks.settings import RelaySettings

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
DEFAULT_MEMORY_MB = 256
DEFAULT_TIMEOUT = Duration.seconds(10)
LOGGING_FORMAT = lambda_.LoggingFormat.JSON
SYSTEM_LOG_LEVEL = lambda_.SystemLogLevel.WARN

# The periodic functions (the reconciler's rounds, the scheduler's sweeps) run once a minute, and a
# run missed is made up by the next one: an invocation older than a minute is not retried.
EVERY_MINUTE = events.Schedule.rate(Duration.minutes(1))
MISSED_RUN_MAX_AGE = Duration.minutes(1)
# A run finishes well before the next one starts (conditional writes keep overlapping runs safe).
PERIODIC_TIMEOUT = Duration.seconds(50)

POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
}


class FunctionPackage(Construct):
    """What all functions share: the code asset (functions/ + schemas/), the dependency layer and
    the application log level (`relay.applicationLogLevel`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_dir: Path,
        layer_dir: Path,
        application_log_level: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.application_log_level = lambda_.ApplicationLogLevel(application_log_level)
        # One asset object: CDK uploads it once however many functions use it.
        self.code = lambda_.Code.from_asset(str(source_dir))
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(layer_dir)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
            description="Relay runtime dependencies (aws-lambda-powertools, jsonschema)",
        )


class RelayFunction(Construct):
    """One Lambda with its own role and log group; grant it exactly what its step needs.

    The role starts with nothing but writing to its own log group (and X-Ray, which tracing adds).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: FunctionPackage,
        handler: str,
        description: str,
        environment: dict[str, str],
        memory_size: int = DEFAULT_MEMORY_MB,
        timeout: Duration = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY)
        # An own role instead of the default one with the AWSLambdaBasicExecutionRole managed
        # policy: that one may write to every log group of the account.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Relay {construct_id} function",
        )
        self.log_group.grant_write(self.role)
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=package.code,
            handler=handler,
            layers=[package.layer],
            description=description,
            memory_size=memory_size,
            timeout=timeout,
            role=self.role,
            log_group=self.log_group,
            # Sampled as the upstream trace header says (API Gateway, Step Functions, the SQS
            # message's AWSTraceHeader); see stacks/constructs/observability.TraceSampling.
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=LOGGING_FORMAT,
            system_log_level_v2=SYSTEM_LOG_LEVEL,
            application_log_level_v2=package.application_log_level,
            environment={**POWERTOOLS_ENVIRONMENT, **environment},
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Python 3.12 is the runtime Relay targets: the dependency layer is built for cp312 "
            "(stacks/bundling.py). Moving runtimes is a deliberate change of both, not a default.",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing (Tracing.ACTIVE) adds xray:PutTraceSegments and xray:PutTelemetryRecords, "
            "which support no resource-level permissions.",
        )

    def grant_item_writes(self, table_arn: str, *actions: str, prefixes: tuple[str, ...]) -> None:
        """Allow DynamoDB `actions` on the items whose partition key starts with one of `prefixes`
        only (`dynamodb:LeadingKeys`): a function's writes stay within the kinds of item it owns."""
        self.grant([table_arn], *actions, leading_keys=[f"{prefix}*" for prefix in prefixes])

    def grant_history_moves(self, table_arn: str) -> None:
        """A function that appends events to a message's head also moves its older events to an
        overflow item of the same message when the head grows (one transaction, a PutItem in it)."""
        self.grant_item_writes(table_arn, "dynamodb:PutItem", prefixes=(MESSAGE_PREFIX,))

    def grant(self, resource_arns: list[str], *actions: str, leading_keys: list[str] | None = None) -> None:
        """Allow exactly `actions` on exactly `resource_arns` (no index or sub-resource wildcards);
        with `leading_keys`, only on DynamoDB items whose partition key matches one of them."""
        conditions = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": leading_keys}} if leading_keys else None
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=list(actions), resources=resource_arns, conditions=conditions)
        )


def run_every_minute(scope: Construct, function: RelayFunction, description: str) -> events.Rule:
    """The EventBridge rule `Schedule` of `scope` that runs `function` every minute, with no retries of
    old runs (neither EventBridge's nor Lambda's asynchronous ones): the next run makes a missed one up."""
    function.function.configure_async_invoke(retry_attempts=0, max_event_age=MISSED_RUN_MAX_AGE)
    return events.Rule(
        scope,
        "Schedule",
        description=description,
        schedule=EVERY_MINUTE,
        targets=[targets.LambdaFunction(function.function, retry_attempts=0, max_event_age=MISSED_RUN_MAX_AGE)],
    )


def handler_path(step: str) -> str:
    """The handler of a step: each step is a package under functions/ with a handler module."""
    return f"functions.{step}.handler.lambda_handler"


@dataclass(frozen=True)
class Foundation:
    """What every capability's functions stand on: the code package, the table, the delivery queue
    and the deployment's settings. Each capability construct takes this one argument, so how a
    function is made and which variables every function reads are written once, here."""

    package: FunctionPackage
    table: dynamodb.ITable
    queue: sqs.IQueue
    settings: RelaySettings

    def environment(self, extra: Mapping[str, str] | None = None, *, with_queue: bool = False) -> dict[str, str]:
        """The table, the deployment's settings and (`with_queue`) the delivery queue, plus `extra`."""
        environment: dict[str, str] = {Setting.TABLE_NAME: self.table.table_name}
        if with_queue:
            environment[Setting.QUEUE_URL] = self.queue.queue_url
        return {**environment, **self.settings.function_environment(), **(extra or {})}

    def function(
        self,
        scope: Construct,
        construct_id: str,
        step: str,
        description: str,
        environment: dict[str, str],
        **options: Any,
    ) -> RelayFunction:
        """The function of `step` (functions/<step>/handler.py) with its own role and log group."""
        return RelayFunction(
            scope,
            construct_id,
            package=self.package,
            handler=handler_path(step),
            description=description,
            environment=environment,
            **options,
        )

    def step_function(
        self,
        scope: Construct,
        step: str,
        description: str,
        extra: Mapping[str, str] | None = None,
        *,
        with_queue: bool = False,
        **options: Any,
    ) -> RelayFunction:
        """The function of `step`, named after it (construct `<Step>` of `scope`), with the foundation's
        `environment(extra, with_queue=...)`."""
        environment = self.environment(extra, with_queue=with_queue)
        return self.function(scope, step.capitalize(), step, description, environment, **options)

    def periodic_function(
        self, scope: Construct, step: str, description: str, extra: Mapping[str, str] | None = None
    ) -> tuple[RelayFunction, events.Rule]:
        """The function of a step that runs every minute (the rule `run_every_minute` adds to `scope`)
        and hands messages to the delivery queue: the queue in its environment, a run within the minute."""
        function = self.step_function(scope, step, description, extra, with_queue=True, timeout=PERIODIC_TIMEOUT)
        return function, run_every_minute(scope, function, f"Run the Relay {step} every minute")
