"""Schemathesis against `relay dev` (in-process, real HTTP) and the OpenAPI document it serves.

Every operation is called with generated requests, valid (positive) and invalid (negative), with
the development sender's token (and, in some negative cases, without it). Each answer must not be
a 5xx, must use a status code the document lists for the operation, have the documented content
type, and its body must match the documented schema; invalid requests must be rejected with a
4xx. The number of examples is bounded so the module fits CI (about half a minute);
RELAY_FUZZ_EXAMPLES raises it. The answers seen are printed per operation and status (with -s).

Generated messages almost never name the authenticated sender and a current timestamp, so half of
the positive POST /messages cases get both set (the others exercise 403 and 400); some of the
positive messageId path parameters are replaced by a message that exists, so status, replay and
cancel also answer 200/202/409, not only 404.
"""

from __future__ import annotations

import json
import os
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode

from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.openapi import OPENAPI_PATH
from tests.fuzz.conftest import failed_message, http

# Examples per operation (5 operations) and phase. For a deeper local run:
# RELAY_FUZZ_EXAMPLES=1000 pytest tests/fuzz/test_schemathesis.py -s
MAX_EXAMPLES = 100

CHECKS = {
    "not_a_server_error": {"enabled": True},
    "status_code_conformance": {"enabled": True},
    "content_type_conformance": {"enabled": True},
    "response_schema_conformance": {"enabled": True},
    "negative_data_rejection": {"enabled": True},
    # Positive data is often refused for rules a schema cannot express (senderId must be the
    # authenticated sender, timestamp within the retention, no private targets): 400 is right.
    "positive_data_acceptance": {"enabled": False},
    # Wants 405 for a method the document does not list. API Gateway answers those with its
    # MISSING_AUTHENTICATION_TOKEN gateway response, mapped to 404 NOT_FOUND, and relay dev does
    # the same; not_a_server_error and content_type_conformance still apply to those answers.
    "unsupported_method": {"enabled": False},
}


def _max_examples() -> int:
    return int(os.environ.get("RELAY_FUZZ_EXAMPLES") or MAX_EXAMPLES)


@pytest.fixture(scope="module")
def existing(local_relay: LocalRelay) -> dict[str, str]:
    """Message ids in known states: FAILED, PENDING (no worker runs) and CANCELLED."""
    ids = {name: f"fuzz-{name}-{uuid.uuid4().hex[:8]}" for name in ("failed", "pending", "cancelled")}
    failed_message(local_relay, ids["failed"])
    for message_id in (ids["pending"], ids["cancelled"]):
        status, _ = http(
            "POST",
            f"{local_relay.url}/messages",
            _message_bytes(message_id),
            token=local_relay.dev_token,
        )
        assert status == 202
    status, _ = http("POST", f"{local_relay.url}/messages/{ids['cancelled']}/cancel", b"", token=local_relay.dev_token)
    assert status == 200
    return ids


def _message_bytes(message_id: str) -> bytes:
    return json.dumps(
        {
            "messageId": message_id,
            "senderId": DEV_SENDER,
            "timestamp": _now(),
            "targetUrl": "http://127.0.0.1:9/fuzz",
            "body": {"fuzz": True},
        }
    ).encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# Loaded eagerly from the file the server serves (the test below checks they are the same bytes):
# `schemathesis.pytest.from_fixture` cannot be used with pytest 9, whose nodes no longer have the
# `_nodeid` attribute schemathesis' lazy loader rewrites (schemathesis 4.32).
schema = schemathesis.openapi.from_path(
    OPENAPI_PATH,
    config=SchemathesisConfig.from_dict(
        {
            # allow-extra-parameters off: unknown query parameters are ignored, as API Gateway does,
            # so a request that only adds one is not invalid.
            "generation": {
                "mode": "all",
                "max-examples": _max_examples(),
                "database": "none",
                "allow-extra-parameters": False,
            },
            "checks": CHECKS,
            "request-timeout": 30.0,
        }
    ),
)


def test_the_server_serves_this_document(local_relay: LocalRelay) -> None:
    status, served = http("GET", f"{local_relay.url}/openapi.json")
    assert status == 200 and served == json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


STATS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print("\nschemathesis answers by operation and status:")
    for key, count in sorted(STATS.items()):
        print(f"  {key}: {count}")


def _pick(value: Any, choices: list[str]) -> str | None:
    """A deterministic choice from the generated value (Hypothesis replays must be stable)."""
    digest = zlib.crc32(repr(value).encode("utf-8", "surrogatepass"))
    index = digest % (len(choices) + 1)
    return choices[index] if index < len(choices) else None


def _steer(case: Any, existing: dict[str, str]) -> None:
    """Make some positive cases reach deeper than 403/404 (see the module docstring)."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return
    if isinstance(case.body, dict) and case.operation.path == "/messages" and _pick(case.body, ["steer"]):
        case.body = {**case.body, "senderId": DEV_SENDER, "timestamp": _now()}
    if case.path_parameters and "messageId" in case.path_parameters:
        chosen = _pick(case.path_parameters["messageId"], list(existing.values()))
        if chosen:
            case.path_parameters = {**case.path_parameters, "messageId": chosen}


@schema.parametrize()
def test_every_operation_conforms_to_the_document(case: Any, local_relay: LocalRelay, existing: dict[str, str]) -> None:
    _steer(case, existing)
    # An object or array in the query is sent exploded (limit={"limit": 9, "status": "FAILED"}
    # goes out as limit=9&status=FAILED), which can be a valid request on the wire; schemathesis
    # would still expect it to be refused. Every other check applies.
    exploded = any(isinstance(value, (dict, list)) for value in (case.query or {}).values())
    response = case.call_and_validate(
        base_url=local_relay.url,
        headers={"Authorization": f"Bearer {local_relay.dev_token}"},
        excluded_checks=[schemathesis.checks.negative_data_rejection] if exploded else None,
    )
    assert response.status_code < 500
    STATS[f"{case.operation.method.upper()} {case.operation.path} {response.status_code}"] += 1
