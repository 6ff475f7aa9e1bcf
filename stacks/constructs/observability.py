"""Alarms, the operations dashboard and X-Ray sampling.

Relay's own counts come from the functions' Powertools metrics (functions/adapters/observability:
namespace `Relay`, dimension `service=relay`), written to stdout as CloudWatch embedded metric
format (EMF) lines, which CloudWatch Logs turns into metrics whatever the functions' log format
(stacks/constructs/base/functions.py); queues, runs and the API from AWS's metrics. No alarm reads a
log line (there is no metric filter), so the log format is free to change.

Alarms have no actions here: a deployment attaches its own (SNS, chat, paging) to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aws_cdk import Duration, Names, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_xray as xray
from constructs import Construct

from functions.contract.metric_names import NAMESPACE, SERVICE_NAME, Metric
from functions.contract.secret_names import SENDER_SECRET_PREFIX, SIGNING_SECRET_NAME

DIMENSIONS = {"service": SERVICE_NAME}
PERIOD = Duration.minutes(5)

# The share of finished deliveries that ended FAILED above which the failure-rate alarm fires
# (in 2 of 3 five-minute periods, so one bad target does not page at low volume on its own).
FAILURE_RATE_THRESHOLD = 0.1

# X-Ray evaluates rules in ascending priority (1 to 9999) and uses the first that matches; the
# account's Default rule is 10000. Relay's rules match only its own stage and machines, so this
# only decides against broad rules the account has: one with a lower number still wins.
SAMPLING_RULE_PRIORITY = 1000
# RuleName: at most 32 characters, unique in the account and region.
SAMPLING_RULE_NAME_LENGTH = 32


class TraceSampling(Construct):
    """X-Ray sampling rules for the requests that start a Relay trace.

    X-Ray samples head-first: the first traced service decides, and every service downstream follows
    the decision it receives in the trace header (X-Amzn-Trace-Id, `Sampled=1` or `Sampled=0`).
    Only services that make that first decision read sampling rules; in Relay those are
    - the API stage (tracing on): every POST /messages and every operations route. Its decision goes
      to the authorizer, to the ingest machine (StartSyncExecution) and on to its functions;
    - the state machines (tracing on), for a run started without a trace header. Relay's own runs
      all carry one: the dispatcher and the reconciler start them through the SDK, which the X-Ray
      SDK (Powertools' Tracer) stamps with the function's trace, and the fast lane starts the slow
      lane itself.
    The functions (active tracing) follow the header they get: from API Gateway or Step Functions,
    or, for the SQS-triggered dispatcher, the AWSTraceHeader the message was sent with, so a
    delivery is traced when the ingest that queued it was. Lambda reads no sampling rule: a function
    invoked without a header (only the scheduled reconciler) is sampled at Lambda's fixed rate of one
    request per second and 5 % of the rest (CDK's `Tracing.ACTIVE`; Lambda Developer Guide, "Visualize
    Lambda function invocations using AWS X-Ray"), which for one run a minute is every run.

    So one rule per entry point, each matching exactly one resource by its ARN (the account's rules
    are shared by every application in it): `reservoir_per_second` traces per second per rule, then
    `rate` of the rest. The reservoir is shared by every service that uses the rule.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: apigateway.Stage,
        machines: dict[str, sfn.IStateMachine],
        rate: float,
        reservoir_per_second: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rules: dict[str, xray.CfnSamplingRule] = {}

        def rule(rule_id: str, service_type: str, resource_arn: str) -> None:
            holder = Construct(self, rule_id)
            self.rules[rule_id] = xray.CfnSamplingRule(
                holder,
                "Rule",
                sampling_rule=xray.CfnSamplingRule.SamplingRuleProperty(
                    rule_name=Names.unique_resource_name(holder, max_length=SAMPLING_RULE_NAME_LENGTH),
                    priority=SAMPLING_RULE_PRIORITY,
                    fixed_rate=rate,
                    reservoir_size=reservoir_per_second,
                    service_name="*",
                    service_type=service_type,
                    host="*",
                    http_method="*",
                    url_path="*",
                    resource_arn=resource_arn,
                    version=1,
                ),
            )

        rule("Api", "AWS::ApiGateway::Stage", stage.stage_arn)
        for name, machine in machines.items():
            rule(name, "AWS::StepFunctions::StateMachine", machine.state_machine_arn)


def relay_metric(name: str, statistic: str = "Sum", label: str | None = None) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map=DIMENSIONS,
        statistic=statistic,
        period=PERIOD,
        label=label,
    )


def failure_rate() -> cloudwatch.MathExpression:
    """MessagesFailed / (MessagesDelivered + MessagesFailed); no data when nothing finished."""
    return cloudwatch.MathExpression(
        expression="FILL(failed, 0) / (FILL(delivered, 0) + FILL(failed, 0))",
        using_metrics={"failed": relay_metric(Metric.FAILED), "delivered": relay_metric(Metric.DELIVERED)},
        label="Delivery failure rate",
        period=PERIOD,
    )


def failed_runs(machine: sfn.IStateMachine, label: str) -> cloudwatch.MathExpression:
    """Runs that failed, timed out or were aborted: an infrastructure problem, not a failed delivery
    (a message that ends FAILED ends a run that succeeded)."""
    return cloudwatch.MathExpression(
        expression="FILL(failed, 0) + FILL(timedOut, 0) + FILL(aborted, 0)",
        using_metrics={
            "failed": machine.metric_failed(period=PERIOD),
            "timedOut": machine.metric_timed_out(period=PERIOD),
            "aborted": machine.metric_aborted(period=PERIOD),
        },
        label=label,
        period=PERIOD,
    )


@dataclass(frozen=True)
class AlarmInputs:
    """The resources the alarms watch, as the Observability construct receives them."""

    rest_api: apigateway.RestApi
    fast_lane: sfn.IStateMachine
    slow_lane: sfn.IStateMachine
    dead_letter_queue: sqs.IQueue
    failed_queue: sqs.IQueue
    reconciler: lambda_.IFunction


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: it fires when `metric` is above `threshold` in `datapoints_to_alarm` of
    `evaluation_periods` five-minute periods (in all of them when None); no data is not breaching."""

    construct_id: str
    metric: Callable[[AlarmInputs], cloudwatch.IMetric]
    description: str
    threshold: float = 0
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None


# Every alarm, in the order the dashboard's alarm widget shows them: what waits on a person first
# (FAILED messages, open targets, missing secrets), then the path (dead letters, failed runs, 5XX),
# then Relay's own health (the failure rate, the reconciler, stuck messages).
ALARMS: tuple[AlarmSpec, ...] = (
    AlarmSpec(
        "FailedMessagesAlarm",
        lambda on: _depth(on.failed_queue, "Failed messages"),
        "Messages ended FAILED (retries exhausted, rejected, blocked or expired) and wait on the "
        "failed-messages queue: read the reason, fix the target, replay them.",
    ),
    AlarmSpec(
        "TargetOpenedAlarm",
        lambda on: relay_metric(Metric.OPEN_TARGETS, statistic="Maximum", label="Open targets"),
        "At least one target's circuit breaker is OPEN (on for as long as one is) after a run of failed "
        "attempts: its messages are PAUSED (not failed) and a probe goes now and then. `relay targets "
        "health ORIGIN` shows it; it closes by itself when a probe gets through, or by hand with "
        "`relay targets resume ORIGIN`.",
    ),
    AlarmSpec(
        "SigningSecretMissingAlarm",
        lambda on: relay_metric(Metric.SIGNING_SECRET_MISSING),
        "Deliveries found no signing secret for their sender in Secrets Manager "
        f"({SENDER_SECRET_PREFIX}<sender>/{SIGNING_SECRET_NAME}). They are retried, not failed: "
        "restore the secret (or run `relay senders rotate-secret`) before the retries run out.",
    ),
    AlarmSpec(
        "DeliveryDeadLettersAlarm",
        lambda on: _depth(on.dead_letter_queue, "Delivery dead letters"),
        "The dispatcher failed to start delivery for queued messages several times; the reconciler "
        "re-drives them, but the dispatcher's errors need a look.",
    ),
    AlarmSpec(
        "FastLaneRunsFailedAlarm",
        lambda on: failed_runs(on.fast_lane, "Fast-lane runs failed"),
        "Fast-lane runs failed, timed out or were aborted (for instance the slow lane could not be "
        "started); the reconciler re-drives their messages when their lease ends (at most minutes).",
    ),
    AlarmSpec(
        "SlowLaneRunsFailedAlarm",
        lambda on: failed_runs(on.slow_lane, "Slow-lane runs failed"),
        "Slow-lane runs failed, timed out or were aborted; a run that gave up released its lease, so "
        "the reconciler re-drives its message within a round (others when their lease ends).",
    ),
    AlarmSpec(
        "Api5xxAlarm",
        lambda on: on.rest_api.metric_server_error(period=PERIOD, statistic="Sum", label="API 5XX"),
        "The API answered 5XX (SYSTEM_ERROR): the ingest path or the API function failed.",
    ),
    AlarmSpec(
        "DeliveryFailureRateAlarm",
        lambda on: failure_rate(),
        f"More than {FAILURE_RATE_THRESHOLD:.0%} of finished deliveries ended FAILED.",
        threshold=FAILURE_RATE_THRESHOLD,
        evaluation_periods=3,
        datapoints_to_alarm=2,
    ),
    AlarmSpec(
        "ReconcilerErrorsAlarm",
        lambda on: on.reconciler.metric_errors(period=PERIOD, statistic="Sum"),
        "The reconciler has failed for 15 minutes: stuck messages are not being re-driven.",
        evaluation_periods=3,
    ),
    AlarmSpec(
        "StuckMessagesAlarm",
        lambda on: relay_metric(Metric.STUCK),
        "Messages were re-driven more than 5 times without progress (never claimed from the queue, or "
        "their runs keep ending without a result): Relay's own trouble, not the target's. They are not "
        "failed: the reconciler keeps re-driving them with a growing delay until they are delivered or "
        "expire. Their REDRIVEN events say what kept them.",
    ),
    AlarmSpec(
        "ReconcilerPartErrorsAlarm",
        lambda on: relay_metric(Metric.RECONCILER_ERRORS),
        "A part of a reconciler round, or one due message, failed (logged with its message); the round "
        "went on and the message is looked at again later. Repeated errors need a look.",
        evaluation_periods=3,
        datapoints_to_alarm=2,
    ),
)


class Observability(Construct):
    """Alarms on what needs a person, and one dashboard of the whole path."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        rest_api: apigateway.RestApi,
        ingest: sfn.IStateMachine,
        ingest_batch: sfn.IStateMachine,
        fast_lane: sfn.IStateMachine,
        slow_lane: sfn.IStateMachine,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        failed_queue: sqs.IQueue,
        reconciler: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        inputs = AlarmInputs(rest_api, fast_lane, slow_lane, dead_letter_queue, failed_queue, reconciler)
        # Keyed by construct id, in ALARMS' order.
        self.alarms: dict[str, cloudwatch.Alarm] = {spec.construct_id: self._alarm(spec, inputs) for spec in ALARMS}

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-operations",
            default_interval=Duration.hours(3),
        )
        self._add_path_rows(queue, dead_letter_queue, failed_queue, [ingest, ingest_batch, fast_lane, slow_lane])
        self._add_operations_rows(rest_api)
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24, height=3)
        )

    def _alarm(self, spec: AlarmSpec, inputs: AlarmInputs) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            spec.construct_id,
            metric=spec.metric(inputs),
            threshold=spec.threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=spec.description,
        )

    def _add_path_rows(
        self,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        failed_queue: sqs.IQueue,
        machines: list[sfn.IStateMachine],
    ) -> None:
        """Messages received, attempts, outcomes, latency, queue depths and executions."""
        ingest, ingest_batch, fast_lane, slow_lane = machines
        self.dashboard.add_widgets(
            _graph(
                "Messages received",
                [
                    relay_metric(Metric.ACCEPTED, label="Accepted"),
                    relay_metric(Metric.DUPLICATE, label="Duplicate"),
                    relay_metric(Metric.REJECTED, label="Rejected"),
                ],
            ),
            _graph(
                "Delivery attempts",
                [
                    relay_metric(Metric.ATTEMPTS, label="Attempts"),
                    relay_metric(Metric.ATTEMPTS_FAILED, label="Failed attempts"),
                ],
            ),
            _graph(
                "Delivered and failed",
                [relay_metric(Metric.DELIVERED, label="Delivered"), relay_metric(Metric.FAILED, label="Failed")],
                [failure_rate()],
            ),
        )
        self.dashboard.add_widgets(
            _graph(
                "Delivery latency (accepted to delivered)",
                [
                    relay_metric(Metric.LATENCY, statistic="p50", label="p50"),
                    relay_metric(Metric.LATENCY, statistic="p99", label="p99"),
                ],
            ),
            _graph(
                "Queue depths",
                [
                    _depth(queue, "Delivery queue"),
                    _depth(dead_letter_queue, "Delivery dead letters"),
                    _depth(failed_queue, "Failed messages"),
                ],
                [queue.metric_approximate_age_of_oldest_message(period=PERIOD, label="Oldest queued (s)")],
            ),
            _graph(
                "Executions",
                [
                    *_runs(fast_lane, "Fast lane"),
                    *_runs(slow_lane, "Slow lane"),
                    *_runs(ingest, "Ingest"),
                    *_runs(ingest_batch, "Batch ingest"),
                ],
            ),
        )

    def _add_operations_rows(self, rest_api: apigateway.RestApi) -> None:
        """The API, operations (replays, cancels, re-drives) and the circuit breaker."""
        self.dashboard.add_widgets(
            _graph(
                "API",
                [
                    rest_api.metric_count(period=PERIOD, label="Requests"),
                    rest_api.metric_client_error(period=PERIOD, statistic="Sum", label="4XX"),
                    rest_api.metric_server_error(period=PERIOD, statistic="Sum", label="5XX"),
                ],
                [rest_api.metric_latency(period=PERIOD, statistic="p99", label="Latency p99 (ms)")],
                width=12,
            ),
            _graph(
                "Operations",
                [
                    relay_metric(Metric.REPLAYED, label="Replayed"),
                    relay_metric(Metric.CANCELLED, label="Cancelled"),
                    relay_metric(Metric.REDRIVEN, label="Re-driven by the reconciler"),
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            _graph(
                "Circuit breaker (targets opened and closed, messages paused and resumed)",
                [
                    relay_metric(Metric.TARGET_OPENED, label="Targets opened"),
                    relay_metric(Metric.TARGET_CLOSED, label="Targets closed"),
                    relay_metric(Metric.OPEN_TARGETS, statistic="Maximum", label="Open targets"),
                ],
                [
                    relay_metric(Metric.PAUSED, label="Messages paused"),
                    relay_metric(Metric.RESUMED, label="Messages resumed"),
                ],
                width=24,
            ),
        )


def _depth(queue_: sqs.IQueue, label: str) -> cloudwatch.Metric:
    return queue_.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum", label=label)


def _graph(
    title: str, left: list[cloudwatch.IMetric], right: list[cloudwatch.IMetric] | None = None, width: int = 8
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=left, right=right or [], width=width, height=6)


def _runs(machine: sfn.IStateMachine, lane: str) -> list[cloudwatch.IMetric]:
    return [
        machine.metric_started(period=PERIOD, label=f"{lane} started"),
        machine.metric_succeeded(period=PERIOD, label=f"{lane} succeeded"),
        machine.metric_failed(period=PERIOD, label=f"{lane} failed"),
        machine.metric_timed_out(period=PERIOD, label=f"{lane} timed out"),
    ]
