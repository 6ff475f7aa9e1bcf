"""Two caches that make the embedded AWS fast enough to push 1,000+ messages through in CI time.

Neither changes what Relay does; both remove client construction from hot loops:
- moto's Step Functions interpreter builds a new boto3 Lambda client for every Lambda task it
  runs (about a third of an ingest run's cost); one client per (region, service) serves them all.
- `QueueWorker.poll_once` builds a new SQS client on every poll (20 per second when idle).
boto3 clients are thread-safe, so sharing them is what a long-running process would do anyway.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3


class _CachedBoto3:
    """Stands in for the `boto3` module inside relay.local.workers."""

    @staticmethod
    @functools.lru_cache(maxsize=16)
    def client(service: str, region_name: str | None = None) -> Any:
        return boto3.client(service, region_name=region_name)  # type: ignore[call-overload]


@contextmanager
def cached_clients() -> Iterator[None]:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    import relay.local.workers as workers

    original_for = lambda_eval_utils.boto_client_for
    original_boto3 = workers.boto3
    cache = functools.lru_cache(maxsize=16)(lambda region, service: original_for(region, service))

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        return cache(region, service)

    lambda_eval_utils.boto_client_for = boto_client_for
    workers.boto3 = _CachedBoto3  # type: ignore[assignment]
    try:
        yield
    finally:
        lambda_eval_utils.boto_client_for = original_for
        workers.boto3 = original_boto3
        _CachedBoto3.client.cache_clear()
