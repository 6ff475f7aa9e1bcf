"""A cache that makes the embedded AWS fast enough to push 1,000+ messages through in CI time.

moto's Step Functions interpreter builds a new boto3 Lambda client for every Lambda task it runs
(about a third of an ingest run's cost). One client per (region, service) serves them all: boto3
clients are thread-safe, and nothing Relay does changes. (relay/local/emulator.py could install
the same cache for `relay dev` and every other test.)
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def cached_clients() -> Iterator[None]:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    original_for = lambda_eval_utils.boto_client_for
    cache = functools.lru_cache(maxsize=16)(lambda region, service: original_for(region, service))

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        return cache(region, service)

    lambda_eval_utils.boto_client_for = boto_client_for
    try:
        yield
    finally:
        lambda_eval_utils.boto_client_for = original_for
