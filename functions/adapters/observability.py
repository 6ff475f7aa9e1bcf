"""Powertools Logger, Tracer and Metrics, created once per process and shared by every handler, and
the one way a step's handler is wrapped in them."""

from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer

from functions.contract.metric_names import NAMESPACE, SERVICE_NAME

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE_NAME)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def step_handler(correlation_id_path: str | None = None) -> Callable[[Handler], Handler]:
    """A Lambda handler with the invocation's context (and the correlation id found at
    `correlation_id_path` in the event) on every log line, its trace segment (without the response:
    it may carry a message's content) and its metrics flushed when it returns."""

    def wrap(handler: Handler) -> Handler:
        traced = tracer.capture_lambda_handler(metrics.log_metrics(handler), capture_response=False)
        # Powertools types its decorators loosely; each keeps the handler's signature (functools.wraps).
        return cast(Handler, logger.inject_lambda_context(traced, correlation_id_path=correlation_id_path))

    return wrap
