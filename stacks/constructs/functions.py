"""How every Relay Lambda is built: one code asset, one dependency layer, one role per function."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from functions.shared.metric_names import SERVICE_NAME
from stacks.nag import acknowledge

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
DEFAULT_MEMORY_MB = 256
DEFAULT_TIMEOUT = Duration.seconds(10)

POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    "POWERTOOLS_METRICS_NAMESPACE": "Relay",
}


class FunctionPackage(Construct):
    """The code asset (functions/ + schemas/) and the dependency layer shared by all functions."""

    def __init__(self, scope: Construct, construct_id: str, *, source_dir: Path, layer_dir: Path) -> None:
        super().__init__(scope, construct_id)
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
            tracing=lambda_.Tracing.ACTIVE,
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

    def grant(self, resource_arns: list[str], *actions: str) -> None:
        """Allow exactly `actions` on exactly `resource_arns` (no index or sub-resource wildcards)."""
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=list(actions), resources=resource_arns))
