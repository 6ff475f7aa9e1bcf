"""The OpenAPI 3.1 document of the Relay API, generated from `schemas/message.schema.json`.

The message schema stays the one source of the message contract: it becomes the request body of
`POST /messages` (OpenAPI 3.1 speaks JSON Schema 2020-12, so it is embedded as it is, with its
`$defs` moved under `components/schemas`). The statuses, event types and the error codes of the
read-and-act routes come from the code that answers them, so the document cannot drift silently:
`python -m relay.openapi --check` fails when `schemas/openapi.json` is not what this module writes.

    python -m relay.openapi            # write schemas/openapi.json
    python -m relay.openapi --check    # exit 1 when the file is stale
    python -m relay.openapi --stdout   # print it
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from functions.domain.breaker import BreakerState
from functions.domain.config import MESSAGE_SCHEMA_PATH, SCHEMA_DIR
from functions.domain.exceptions import (
    MessageExpired,
    MessageFinished,
    MessageNotFinished,
    MessageNotFound,
    ReplayJobNotFound,
    TargetNotFound,
)
from functions.domain.json_text import MAX_NESTING_DEPTH, NESTING_MESSAGE
from functions.domain.model import EventType, Status
from functions.domain.validation import MAX_BATCH_MESSAGES, MAX_BATCH_REQUEST_BYTES
from functions.services.api_errors import ERROR_CODES
from functions.services.operations import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from functions.services.replays import PAGE_SIZE, PAGES_PER_RUN, JobState, replay_schema
from functions.services.responses import (
    MESSAGE_ID_CONFLICT,
    PAYLOAD_TOO_LARGE,
    SYSTEM_ERROR,
    VALIDATION_ERROR,
)
from functions.services.runs import ExecutionType, Workflow
from stacks.paths import OPENAPI_PATH, PYPROJECT

SCHEMA_REF = "#/components/schemas/"
RESPONSE_REF = "#/components/responses/"

# Codes answered by the authentication and throttling in front of every route (the Lambda
# authorizer and API Gateway's gateway responses in stacks/api_mapping.py, which relay dev renders
# too), and by relay dev's HTTP server (relay/local/server.py). tests/unit/test_openapi.py checks
# them against both sources.
UNAUTHORIZED = "UNAUTHORIZED"
FORBIDDEN = "FORBIDDEN"
THROTTLED = "THROTTLED"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
NOT_FOUND = "NOT_FOUND"
REQUEST_REJECTED = "REQUEST_REJECTED"


def _code_of(exception_type: type[Exception]) -> str:
    return ERROR_CODES[exception_type][1]


def _status_of(exception_type: type[Exception]) -> int:
    return ERROR_CODES[exception_type][0]


MESSAGE_NOT_FOUND = _code_of(MessageNotFound)
MESSAGE_NOT_FINISHED = _code_of(MessageNotFinished)
MESSAGE_ALREADY_FINISHED = _code_of(MessageFinished)
MESSAGE_EXPIRED = _code_of(MessageExpired)
REPLAY_NOT_FOUND = _code_of(ReplayJobNotFound)
TARGET_NOT_FOUND = _code_of(TargetNotFound)
TARGET_SCHEMA_PATH = SCHEMA_DIR / "target.schema.json"

# Every error code, with the HTTP status it comes with and what it means.
ERROR_CATALOG: dict[str, tuple[int | str, str]] = {
    VALIDATION_ERROR: (
        400,
        "The request is not valid; `details` names every offending field by its JSON path. On every route a "
        f"field's JSON value may nest arrays and objects at most {MAX_NESTING_DEPTH} levels deep; deeper is this "
        f"error, naming the field (`$.body` {NESTING_MESSAGE}; `$.messages[3].body` in a batch).",
    ),
    UNAUTHORIZED: (401, "No token, or an unknown one: send `Authorization: Bearer <token>`."),
    FORBIDDEN: (403, "The sender is disabled, or the message's senderId is not the authenticated sender."),
    MESSAGE_NOT_FOUND: (
        _status_of(MessageNotFound),
        "No such message for this sender (another sender's looks the same).",
    ),
    REPLAY_NOT_FOUND: (_status_of(ReplayJobNotFound), "No such bulk replay job for this sender."),
    NOT_FOUND: (404, "No such route."),
    TARGET_NOT_FOUND: (_status_of(TargetNotFound), "The sender has no limits set for that target."),
    MESSAGE_ID_CONFLICT: (409, "The messageId was already accepted with different content."),
    MESSAGE_NOT_FINISHED: (
        _status_of(MessageNotFinished),
        "Only a DELIVERED, FAILED or CANCELLED message can be replayed.",
    ),
    MESSAGE_ALREADY_FINISHED: (_status_of(MessageFinished), "The message has finished and cannot be cancelled."),
    MESSAGE_EXPIRED: (_status_of(MessageExpired), "The message is past its expiry and cannot be delivered again."),
    PAYLOAD_TOO_LARGE: (413, "The request or the message body is over the configured size limit."),
    UNSUPPORTED_MEDIA_TYPE: (415, "Send JSON with `Content-Type: application/json` (a charset parameter may follow)."),
    THROTTLED: (429, "Too many requests for this sender; retry later (with the same messageId)."),
    REQUEST_REJECTED: ("4xx", "Any other request API Gateway refuses before it reaches Relay (AWS only)."),
    SYSTEM_ERROR: (500, "Relay could not process the request; safe to retry with the same messageId."),
}

# Reusable responses: name -> (status, description, codes the body may carry, details required).
_RESPONSES: dict[str, tuple[int, str, tuple[str, ...], bool]] = {
    "ValidationError": (
        400,
        "The request is invalid; every problem is named by its JSON path.",
        (VALIDATION_ERROR,),
        True,
    ),
    "QueryInvalid": (400, "A query parameter is invalid; each is named as `$.<parameter>`.", (VALIDATION_ERROR,), True),
    "Unauthorized": (401, "No valid API token.", (UNAUTHORIZED,), False),
    "Forbidden": (
        403,
        "The sender is disabled (on AWS also: the sender has no API key in the stage's usage plan).",
        (FORBIDDEN,),
        False,
    ),
    "SenderForbidden": (
        403,
        "The sender is disabled, or the body's senderId is not the authenticated sender (then `details` "
        "names `$.senderId`).",
        (FORBIDDEN,),
        False,
    ),
    "MessageNotFound": (
        404,
        "No such message for this sender. A path that is no route at all answers NOT_FOUND.",
        (MESSAGE_NOT_FOUND, NOT_FOUND),
        False,
    ),
    "ReplayJobNotFound": (
        404,
        "No such replay job for this sender. A path that is no route at all answers NOT_FOUND.",
        (REPLAY_NOT_FOUND, NOT_FOUND),
        False,
    ),
    "TargetNotFound": (
        404,
        "The sender has no limits set for that target (another sender's look the same).",
        (TARGET_NOT_FOUND, NOT_FOUND),
        False,
    ),
    "Conflict": (409, "The messageId was already accepted with different content.", (MESSAGE_ID_CONFLICT,), False),
    "ReplayConflict": (
        409,
        "The message has not finished (MESSAGE_NOT_FINISHED) or is past its expiry (MESSAGE_EXPIRED).",
        (MESSAGE_NOT_FINISHED, MESSAGE_EXPIRED),
        False,
    ),
    "CancelConflict": (409, "The message has already finished.", (MESSAGE_ALREADY_FINISHED,), False),
    "PayloadTooLarge": (
        413,
        "The request or the message body is over the limit; `details` names `$` (the request) or `$.body`. "
        "A request refused by the HTTP layer before Relay reads it (relay dev's server, API Gateway) has no "
        "`details`.",
        (PAYLOAD_TOO_LARGE,),
        False,
    ),
    "UnsupportedMediaType": (
        415,
        "The request's media type is not `application/json` (parameters such as `charset` aside; no "
        "`Content-Type` counts as `application/json`).",
        (UNSUPPORTED_MEDIA_TYPE,),
        False,
    ),
    "Throttled": (429, "Too many requests for this sender.", (THROTTLED,), False),
    "SystemError": (500, "Relay could not process the request; no internal detail is given.", (SYSTEM_ERROR,), False),
    "GatewayTimeout": (
        504,
        "No answer within API Gateway's 29 s; the message may have been accepted. Sending it again with the "
        "same messageId is safe and tells its state.",
        (SYSTEM_ERROR,),
        False,
    ),
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMA_REF + name}


def _version() -> str:
    with PYPROJECT.open("rb") as pyproject:
        return str(tomllib.load(pyproject)["project"]["version"])


def _rewrite_refs(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: (mapping[value] if key == "$ref" and value in mapping else _rewrite_refs(value, mapping))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item, mapping) for item in node]
    return node


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def message_schemas(source: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The message schema as components: `Message` plus one component per `$defs` entry."""
    schema = copy.deepcopy(source)
    definitions: dict[str, Any] = schema.pop("$defs", {})
    source_id = schema.pop("$id", None)
    schema.pop("$schema", None)
    mapping = {f"#/$defs/{name}": SCHEMA_REF + _pascal(name) for name in definitions}
    components = {_pascal(name): _rewrite_refs(value, mapping) for name, value in definitions.items()}
    message = _rewrite_refs(schema, mapping)
    if source_id:
        message["x-source"] = source_id
    components["Message"] = message
    return components


def _error_schemas() -> dict[str, dict[str, Any]]:
    catalog = "\n".join(f"- `{code}` ({status}): {text}" for code, (status, text) in ERROR_CATALOG.items())
    return {
        "FieldError": {
            "type": "object",
            "additionalProperties": False,
            "required": ["path", "message"],
            "properties": {
                "path": {
                    "type": "string",
                    "pattern": "^\\$",
                    "description": "JSON path of the field: `$` (the whole request), `$.targetUrl`, "
                    "`$.headers['X-Trace']`; query parameters as `$.<name>`.",
                },
                "message": {"type": "string"},
            },
        },
        "Error": {
            "description": "Every error answer of the API, whatever the route.\n\n" + catalog,
            "type": "object",
            "additionalProperties": False,
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["code", "message", "requestId"],
                    "properties": {
                        "code": {"type": "string", "enum": list(ERROR_CATALOG)},
                        "message": {"type": "string", "description": "For people; never a stack trace or AWS text."},
                        "requestId": {"type": "string", "description": "Quote it when reporting a problem."},
                        "details": {"type": "array", "minItems": 1, "items": _ref("FieldError")},
                    },
                }
            },
        },
    }


_TIMESTAMP = {"type": "string", "format": "date-time"}


def _resource_schemas(message_schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    statuses = [status.value for status in Status]
    method = {"type": "string", "enum": list(message_schema["properties"]["method"]["enum"])}
    return {
        "Status": {
            "type": "string",
            "enum": statuses,
            "description": "PENDING (stored, not yet attempted) -> DELIVERING -> DELIVERED | RETRYING -> ... -> "
            "FAILED; CANCELLED by an operator; PAUSED while its target's circuit breaker is OPEN (attempts "
            "kept, re-driven when the target recovers, still FAILED at its expiry). DELIVERED, FAILED and "
            "CANCELLED are final.",
        },
        "EventType": {"type": "string", "enum": [event.value for event in EventType]},
        "Accepted": {
            "type": "object",
            "additionalProperties": False,
            "required": ["messageId", "senderId", "status", "acceptedAt", "expiresAt"],
            "properties": {
                "messageId": _ref("Identifier"),
                "senderId": _ref("Identifier"),
                "status": {"const": Status.PENDING.value},
                "acceptedAt": _TIMESTAMP,
                "expiresAt": _TIMESTAMP,
            },
        },
        "Duplicate": {
            "description": "The same message (same id, same content) again: nothing is stored twice; this is "
            "its current state.",
            "type": "object",
            "additionalProperties": False,
            "required": [
                "duplicate",
                "messageId",
                "senderId",
                "status",
                "attempts",
                "acceptedAt",
                "updatedAt",
                "expiresAt",
            ],
            "properties": {
                "duplicate": {"const": True},
                "messageId": _ref("Identifier"),
                "senderId": _ref("Identifier"),
                "status": _ref("Status"),
                "attempts": {"type": "integer", "minimum": 0},
                "acceptedAt": _TIMESTAMP,
                "updatedAt": _TIMESTAMP,
                "expiresAt": _TIMESTAMP,
            },
        },
        "BatchRequest": {
            "description": f"Up to {MAX_BATCH_MESSAGES} messages in one request (and one run), together at most "
            f"{MAX_BATCH_REQUEST_BYTES} bytes. Each message is the body POST /messages takes; a message that "
            "is not one is answered 400 in its result, the others are accepted all the same.",
            "type": "object",
            "additionalProperties": False,
            "required": ["messages"],
            "properties": {
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_MESSAGES,
                    "items": {"description": "A message (see Message); checked one by one, not as a whole."},
                }
            },
        },
        "BatchResult": {
            "description": "What POST /messages would have answered for this message: its status code and body. "
            "An error's requestId is the batch's, followed by `:<index>`.",
            "oneOf": [
                _batch_result(202, _ref("Accepted")),
                _batch_result(200, _ref("Duplicate")),
                _batch_result([400, 403, 409, 413, 500], _ref("Error")),
            ],
        },
        "BatchAccepted": {
            "type": "object",
            "additionalProperties": False,
            "required": ["results"],
            "properties": {
                "results": {
                    "description": "One result per message, in the order of the request.",
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_MESSAGES,
                    "items": _ref("BatchResult"),
                }
            },
        },
        "Event": {
            "description": "One immutable event of the message's life. Fields beyond `type` and `at` depend on "
            "the type (ATTEMPT_FAILED carries statusCode, error, durationMs, ...).",
            "type": "object",
            "required": ["type", "at"],
            "properties": {
                "type": _ref("EventType"),
                "at": _TIMESTAMP,
                "attempt": {"type": "integer", "minimum": 1},
                "lane": {"type": "string"},
                "statusCode": {"type": "integer"},
                "durationMs": {"type": "integer", "minimum": 0},
                "error": {"type": "string"},
                "detail": {"type": "string"},
                "anomaly": {
                    "type": "string",
                    "description": "DELIVERED only: the target answered a 2xx status line, then the rest of its "
                    "response was broken (too many or too large headers, a body cut short, the total timeout).",
                },
                "reason": {"type": "string"},
                "executionArn": {"type": "string"},
                "previousStatus": _ref("Status"),
                "requestId": {"type": "string"},
                "origin": {
                    "type": "string",
                    "description": "PAUSED and RESUMED: the target (scheme://host[:port]) whose circuit breaker "
                    "paused or resumed the message.",
                },
                "nextProbeAt": {**_TIMESTAMP, "description": "PAUSED: when a probe goes to the target next."},
                "probe": {"type": "boolean", "description": "RESUMED: this message goes as the target's probe."},
            },
        },
        "TargetHealth": {
            "description": "A target's circuit breaker: CLOSED (delivering), OPEN (its messages are PAUSED; a "
            "probe goes after a growing backoff) or HALF_OPEN (a probe is on its way).",
            "type": "object",
            "additionalProperties": False,
            "required": ["origin", "state", "consecutiveFailures"],
            "properties": {
                "origin": {"type": "string", "description": "scheme://host[:port], normalised"},
                "state": {"enum": [state.value for state in BreakerState]},
                "consecutiveFailures": {"type": "integer", "minimum": 0},
                "openedAt": _TIMESTAMP,
                "nextProbeAt": _TIMESTAMP,
                "failedProbes": {"type": "integer", "minimum": 0},
            },
        },
        "TargetResume": {
            "type": "object",
            "additionalProperties": False,
            "required": ["origin"],
            "properties": {
                "origin": {"type": "string", "description": "The target: scheme://host[:port], or any URL of it."}
            },
        },
        "TargetResumed": {
            "type": "object",
            "additionalProperties": False,
            "required": ["origin", "previousState", "state", "resumed"],
            "properties": {
                "origin": {"type": "string"},
                "previousState": {"enum": [state.value for state in BreakerState]},
                "state": {"const": BreakerState.CLOSED.value},
                "resumed": {"type": "integer", "minimum": 0, "description": "PAUSED messages re-driven now."},
            },
        },
        "Execution": {
            "description": "One Step Functions run that worked on the message, with the console page that opens "
            "it. An EXPRESS run opens only if the deployment logged it (`stacks.tracing`: failed runs with "
            "`errors`, every run with `all`); a STANDARD run always opens.",
            "type": "object",
            "additionalProperties": False,
            "required": ["executionArn", "type", "workflow", "run", "startedAt", "consoleUrl"],
            "properties": {
                "executionArn": {"type": "string"},
                "type": {"enum": [kind.value for kind in ExecutionType]},
                "workflow": {"enum": [workflow.value for workflow in Workflow]},
                "run": {"type": "integer", "minimum": 0, "description": "0, then one more per replay"},
                "startedAt": {**_TIMESTAMP, "description": "When the run recorded its first event"},
                "consoleUrl": {"type": "string", "format": "uri"},
            },
        },
        "MessageStatus": {
            "description": "A message's status, attempts, timestamps, last error, content, event history and the "
            "state machine executions that delivered it.",
            "type": "object",
            "additionalProperties": False,
            "required": [
                "messageId",
                "senderId",
                "status",
                "attempts",
                "acceptedAt",
                "expiresAt",
                "events",
                "executions",
            ],
            "properties": {
                "messageId": _ref("Identifier"),
                "senderId": _ref("Identifier"),
                "status": _ref("Status"),
                "attempts": {"type": "integer", "minimum": 0},
                "acceptedAt": _TIMESTAMP,
                "updatedAt": _TIMESTAMP,
                "expiresAt": _TIMESTAMP,
                "deliveredAt": _TIMESTAMP,
                "failedAt": _TIMESTAMP,
                "cancelledAt": _TIMESTAMP,
                "lastError": {"type": "string"},
                "targetUrl": {"type": "string"},
                "method": method,
                "ttl": {"type": "integer", "description": "Expiry as Unix seconds (DynamoDB TTL)."},
                "run": {"type": "integer", "minimum": 0, "description": "How often the message was replayed."},
                "redrives": {"type": "integer", "minimum": 0},
                "timestamp": {"type": "string"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"type": "string", "description": "The body exactly as it is delivered."},
                "events": {
                    "type": "array",
                    "items": _ref("Event"),
                    "description": "The history, oldest first. A long history is paged: without `eventsCursor` "
                    "this is the newest page (its last event is the latest); `eventsCursor` in the answer "
                    "fetches the page before it.",
                },
                "eventsCursor": {
                    "type": "string",
                    "description": "Present when earlier events exist: pass it as `?eventsCursor=` for the "
                    "page of events before this one.",
                },
                "executions": {"type": "array", "items": _ref("Execution")},
            },
        },
        "MessageSummary": {
            "type": "object",
            "additionalProperties": False,
            "required": ["messageId", "status", "attempts", "acceptedAt"],
            "properties": {
                "messageId": _ref("Identifier"),
                "status": _ref("Status"),
                "attempts": {"type": "integer", "minimum": 0},
                "acceptedAt": _TIMESTAMP,
                "updatedAt": _TIMESTAMP,
                "targetUrl": {"type": "string"},
                "method": method,
                "lastError": {"type": "string"},
            },
        },
        "MessageList": {
            "type": "object",
            "additionalProperties": False,
            "required": ["items", "nextCursor"],
            "properties": {
                "items": {"type": "array", "maxItems": MAX_PAGE_SIZE, "items": _ref("MessageSummary")},
                "nextCursor": {
                    "type": ["string", "null"],
                    "description": "Pass as `cursor` to read the next page; null on the last page.",
                },
            },
        },
        "Replayed": {
            "type": "object",
            "additionalProperties": False,
            "required": ["messageId", "senderId", "status", "run"],
            "properties": {
                "messageId": _ref("Identifier"),
                "senderId": _ref("Identifier"),
                "status": {"const": Status.PENDING.value},
                "run": {"type": "integer", "minimum": 1},
            },
        },
        "ReplayJob": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "jobId",
                "state",
                "filter",
                "matched",
                "replayed",
                "skipped",
                "failed",
                "createdAt",
                "updatedAt",
            ],
            "properties": {
                "jobId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "state": {"enum": [JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED]},
                "filter": _ref("ReplayFilterApplied"),
                "matched": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Matching messages the job has found so far: it grows page by page while "
                    "the job is RUNNING and is final once it has ended (then matched = replayed + skipped + "
                    "failed).",
                },
                "replayed": {"type": "integer", "minimum": 0, "description": "Matched messages given a new run."},
                "skipped": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Matched messages no longer replayable when their page came (expired, "
                    "replayed by hand or by another job, or in another status or a later failure).",
                },
                "failed": {"type": "integer", "minimum": 0, "description": "Replays that could not be recorded."},
                "createdAt": {"type": "string", "format": "date-time"},
                "updatedAt": {"type": "string", "format": "date-time"},
                "reason": {"type": "string", "description": "Why a FAILED job failed."},
            },
        },
        "ReplayStarted": {
            "type": "object",
            "additionalProperties": False,
            "required": ["jobId", "matched", "state", "filter"],
            "properties": {
                "jobId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "matched": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Matching messages found so far: those of the window's first page "
                    f"(at most {PAGE_SIZE}), so exact for a small job; nothing counts the whole window "
                    "first. The job's `matched` (GET /replays/{jobId}) grows as it pages and is final once "
                    "its state is no longer RUNNING.",
                },
                "state": {
                    "enum": [JobState.RUNNING, JobState.SUCCEEDED],
                    "description": "SUCCEEDED at once when nothing matched; RUNNING otherwise (even with "
                    "`matched` 0, when the window's first page held no message to the filter's origin).",
                },
                "filter": _ref("ReplayFilterApplied"),
            },
        },
        "ReplayFilterApplied": {
            "type": "object",
            "description": "The filter with its defaults filled in and the origin normalised.",
            "additionalProperties": False,
            "required": ["status", "since", "until"],
            "properties": {
                "status": {"enum": [Status.FAILED.value, Status.CANCELLED.value]},
                "since": {"type": "string", "format": "date-time"},
                "until": {"type": "string", "format": "date-time"},
                "origin": {"type": "string"},
            },
        },
        "Cancelled": {
            "type": "object",
            "additionalProperties": False,
            "required": ["messageId", "senderId", "status"],
            "properties": {
                "messageId": _ref("Identifier"),
                "senderId": _ref("Identifier"),
                "status": {"const": Status.CANCELLED.value},
            },
        },
    }


def _batch_result(status: int | list[int], body: dict[str, Any]) -> dict[str, Any]:
    code = {"const": status} if isinstance(status, int) else {"enum": status}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["statusCode", "body"],
        "properties": {"statusCode": code, "body": body},
    }


def target_schemas() -> dict[str, dict[str, Any]]:
    """`PUT /targets` (schemas/target.schema.json, embedded as it is) and the target views."""
    limits = json.loads(TARGET_SCHEMA_PATH.read_text(encoding="utf-8"))
    source_id = limits.pop("$id", None)
    limits.pop("$schema", None)
    if source_id:
        limits["x-source"] = source_id
    nullable_rate = {"type": ["number", "null"]}
    nullable_concurrency = {"type": ["integer", "null"]}
    target = {
        "type": "object",
        "required": ["id", "origin", "ratePerSecond", "maxConcurrency", "updatedAt"],
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^(\\*|https?:[^/]+)$",
                "description": "The origin without its `//` (`https:hooks.example.com`), for DELETE /targets/{id}",
            },
            "origin": {
                "type": "string",
                "description": "scheme://host[:port], normalised; or * (the sender's default)",
            },
            "ratePerSecond": nullable_rate,
            "maxConcurrency": nullable_concurrency,
            "updatedAt": {"type": ["string", "null"], "format": "date-time"},
        },
    }
    view = {
        "allOf": [
            _ref("Target"),
            {
                "type": "object",
                "required": ["inFlight", "tokens"],
                "properties": {
                    "health": {
                        **_ref("TargetHealth"),
                        "description": "The target's circuit breaker (every target but the `*` default).",
                    },
                    "inFlight": {"type": "integer", "minimum": 0, "description": "Attempts holding a slot now."},
                    "tokens": {
                        "type": ["number", "null"],
                        "description": "Attempts the rate allows at once right now (null: no rate limit).",
                    },
                },
            },
        ]
    }
    return {
        "TargetLimits": limits,
        "Target": target,
        "TargetView": view,
        "TargetList": {
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "items": _ref("TargetView")}},
        },
        "TargetDeleted": {
            "type": "object",
            "required": ["id", "origin", "deleted"],
            "properties": {"id": {"type": "string"}, "origin": {"type": "string"}, "deleted": {"const": True}},
        },
    }


def _error_response(description: str, codes: tuple[str, ...], details_required: bool) -> dict[str, Any]:
    narrowed: dict[str, Any] = {"code": {"enum": list(codes)} if len(codes) > 1 else {"const": codes[0]}}
    inner: dict[str, Any] = {"properties": narrowed}
    if details_required:
        inner["required"] = ["details"]
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"allOf": [_ref("Error"), {"properties": {"error": inner}}]},
            }
        },
    }


def _json_response(description: str, schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"description": description, "content": {"application/json": media}}


def _responses(*names: str) -> dict[str, Any]:
    return {str(_RESPONSES[name][0]): {"$ref": RESPONSE_REF + name} for name in names}


_MESSAGE_ID_PARAMETER = {
    "name": "messageId",
    "in": "path",
    "required": True,
    "description": "The messageId the message was sent with.",
    "schema": _ref("Identifier"),
}

_EXAMPLE_MESSAGE = {
    "messageId": "order-1042.created",
    "senderId": "acme",
    "timestamp": "2026-01-31T12:00:00Z",
    "targetUrl": "https://hooks.example.com/orders",
    "headers": {"X-Trace": "abc123"},
    "body": {"order": 1042, "event": "created"},
}


def _paths() -> dict[str, Any]:
    common = ("Unauthorized", "Forbidden", "Throttled", "SystemError")
    return {
        "/messages": {
            "post": {
                "operationId": "sendMessage",
                "summary": "Send a message",
                "description": "Accepts the message exactly once per (senderId, messageId) and delivers it to "
                "`targetUrl` with retries. Sending the same message again answers 200 with its current "
                "state; the same messageId with other content answers 409.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Message"), "example": _EXAMPLE_MESSAGE}},
                },
                "responses": {
                    "202": _json_response(
                        "Accepted: stored, and queued for delivery.",
                        _ref("Accepted"),
                        {
                            "messageId": "order-1042.created",
                            "senderId": "acme",
                            "status": "PENDING",
                            "acceptedAt": "2026-01-31T12:00:00.123Z",
                            "expiresAt": "2026-03-02T12:00:00.123Z",
                        },
                    ),
                    "200": _json_response("The same message again; nothing new is stored.", _ref("Duplicate")),
                    **_responses(
                        "ValidationError",
                        "Unauthorized",
                        "SenderForbidden",
                        "Conflict",
                        "PayloadTooLarge",
                        "UnsupportedMediaType",
                        "Throttled",
                        "SystemError",
                        "GatewayTimeout",
                    ),
                },
            },
            "get": {
                "operationId": "listMessages",
                "summary": "List the sender's messages in one status",
                "description": (
                    "Newest first, paginated with an opaque cursor: FAILED, CANCELLED and PAUSED messages by when "
                    "they entered that status (the most recent failure first), the others by acceptance time."
                ),
                "parameters": [
                    {"name": "status", "in": "query", "required": True, "schema": _ref("Status")},
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PAGE_SIZE,
                            "default": DEFAULT_PAGE_SIZE,
                        },
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "description": "`nextCursor` of the previous page.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json_response("One page of messages.", _ref("MessageList")),
                    **_responses("QueryInvalid", *common),
                },
            },
        },
        "/messages/batch": {
            "post": {
                "operationId": "sendMessages",
                "summary": "Send up to 100 messages at once",
                "description": "One request, one ingest run and one request of the sender's throttle for up to "
                f"{MAX_BATCH_MESSAGES} messages. Each message is treated as POST /messages would treat it, and "
                "the answer holds, in order, the status code and body it would have given: 202 accepted, 200 "
                "duplicate, 409 conflict, 400/403/413 refused. A messageId met twice in one batch is accepted "
                "at its first occurrence; the second is answered as a repeat (200 or 409). Only a malformed "
                "envelope (400, naming `$` or `$.messages`) or a batch too large (413) refuses the whole "
                "request.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("BatchRequest"),
                            "example": {"messages": [_EXAMPLE_MESSAGE]},
                        }
                    },
                },
                "responses": {
                    "200": _json_response(
                        "One result per message, in order.",
                        _ref("BatchAccepted"),
                        {
                            "results": [
                                {
                                    "statusCode": 202,
                                    "body": {
                                        "messageId": "order-1042.created",
                                        "senderId": "acme",
                                        "status": "PENDING",
                                        "acceptedAt": "2026-01-31T12:00:00.123Z",
                                        "expiresAt": "2026-03-02T12:00:00.123Z",
                                    },
                                }
                            ]
                        },
                    ),
                    **_responses(
                        "ValidationError",
                        "Unauthorized",
                        "Forbidden",
                        "PayloadTooLarge",
                        "UnsupportedMediaType",
                        "Throttled",
                        "SystemError",
                        "GatewayTimeout",
                    ),
                },
            },
        },
        "/messages/{messageId}": {
            "parameters": [_MESSAGE_ID_PARAMETER],
            "get": {
                "operationId": "getMessage",
                "summary": "A message's status and history",
                "parameters": [
                    {
                        "name": "eventsCursor",
                        "in": "query",
                        "required": False,
                        "description": "`eventsCursor` of a previous answer: the page of older events.",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"},
                    }
                ],
                "responses": {
                    "200": _json_response("The message.", _ref("MessageStatus")),
                    **_responses("MessageNotFound", "QueryInvalid", *common),
                },
            },
        },
        "/messages/replay": {
            "post": {
                "operationId": "replayMessages",
                "summary": "Replay every FAILED or CANCELLED message matching a filter (a bulk replay job)",
                "description": "Starts a job that gives every matching message a new run with a REPLAYED event "
                "(naming the job), as `POST /messages/{messageId}/replay` does, page by page (runs of at most "
                f"{PAGES_PER_RUN} pages of {PAGE_SIZE}, a second between runs); the deliveries go through the "
                "targets' limits like any other. A message matches when it reached "
                "`status` between `since` (default: 24 hours before `until`) and `until` (default and upper "
                "bound: now) and, with `origin`, its targetUrl has that origin. A job takes any number of "
                "matches: nothing counts them first, so the answer's `matched` is what the window's first page "
                "held and the job's own `matched` grows as it goes. Each message is replayed only while it is "
                "still in the failure (or cancellation) the job matched, so jobs started together over the "
                "same window replay it once (the others count it `skipped`).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("ReplayFilter"),
                            "example": {
                                "status": "FAILED",
                                "since": "2026-01-31T10:00:00Z",
                                "origin": "https://example.com",
                            },
                        }
                    },
                },
                "responses": {
                    "202": _json_response("The job started; follow it at /replays/{jobId}.", _ref("ReplayStarted")),
                    **_responses("ValidationError", *common),
                },
            },
        },
        "/replays/{jobId}": {
            "parameters": [
                {"name": "jobId", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 200}}
            ],
            "get": {
                "operationId": "getReplayJob",
                "summary": "A bulk replay job's progress",
                "responses": {
                    "200": _json_response("The job.", _ref("ReplayJob")),
                    **_responses("ReplayJobNotFound", *common),
                },
            },
        },
        "/messages/{messageId}/replay": {
            "parameters": [_MESSAGE_ID_PARAMETER],
            "post": {
                "operationId": "replayMessage",
                "summary": "Deliver a finished message again",
                "description": "Starts a new delivery run of a finished (DELIVERED, FAILED or CANCELLED) message; "
                "a REPLAYED event records it.",
                "responses": {
                    "202": _json_response("The new run is queued.", _ref("Replayed")),
                    **_responses("MessageNotFound", "ReplayConflict", *common),
                },
            },
        },
        "/targets": {
            "put": {
                "operationId": "putTarget",
                "summary": "Set a target's delivery limits",
                "description": "A target is the origin of a message's targetUrl. Attempts to it wait (without "
                "spending an attempt or a retry) while it is at its rate or concurrency limit; the limits hold "
                "across every Lambda. origin `*` sets the sender's default for targets without limits of "
                "their own; null or absent means unlimited. A changed limit applies within 30 s.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _ref("TargetLimits"),
                            "example": {"origin": "https://hooks.example.com", "ratePerSecond": 2, "maxConcurrency": 1},
                        }
                    },
                },
                "responses": {
                    "200": _json_response("The target's limits, as stored.", _ref("Target")),
                    **_responses("ValidationError", *common),
                },
            },
            "get": {
                "operationId": "listTargets",
                "summary": "The sender's targets: limits and live counts",
                "responses": {
                    "200": _json_response("Every target the sender set limits for.", _ref("TargetList")),
                    **_responses(*common),
                },
            },
        },
        "/targets/{targetId}": {
            "parameters": [
                {
                    "name": "targetId",
                    "in": "path",
                    "required": True,
                    "description": "The target's `id` as GET /targets lists it: its origin without the `//` "
                    "(`https:hooks.example.com`, `http:127.0.0.1:9000`), or `*`. API Gateway decodes `%2F` before it "
                    "matches a route, so an origin percent-encoded whole is answered 404.",
                    "schema": {"type": "string"},
                }
            ],
            "delete": {
                "operationId": "deleteTarget",
                "summary": "Remove a target's limits",
                "responses": {
                    "200": _json_response(
                        "Removed; the target is unlimited again (or takes the defaults).", _ref("TargetDeleted")
                    ),
                    **_responses("TargetNotFound", *common),
                },
            },
        },
        "/targets/health": {
            "get": {
                "operationId": "getTargetHealth",
                "summary": "A target's circuit breaker",
                "description": "The sender's own view of one target (another sender's health of the same target "
                "is its own).",
                "parameters": [
                    {
                        "name": "origin",
                        "in": "query",
                        "required": True,
                        "description": "The target: scheme://host[:port], or any URL of it.",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json_response("The target's health.", _ref("TargetHealth")),
                    **_responses("QueryInvalid", *common),
                },
            },
        },
        "/targets/resume": {
            "post": {
                "operationId": "resumeTarget",
                "summary": "Close a target's circuit by hand and re-drive its PAUSED messages",
                "description": "`relay targets resume ORIGIN`. Each paused message gets a RESUMED event and is "
                "queued again with its attempts kept.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TargetResume")}}},
                "responses": {
                    "200": _json_response("The target is CLOSED.", _ref("TargetResumed")),
                    **_responses("ValidationError", *common),
                },
            },
        },
        "/messages/{messageId}/cancel": {
            "parameters": [_MESSAGE_ID_PARAMETER],
            "post": {
                "operationId": "cancelMessage",
                "summary": "Stop a message that has not finished",
                "responses": {
                    "200": _json_response("Cancelled; no further attempt is made.", _ref("Cancelled")),
                    **_responses("MessageNotFound", "CancelConflict", *common),
                },
            },
        },
    }


def build_document(message_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole OpenAPI document as a dict."""
    if message_schema is None:
        message_schema = json.loads(MESSAGE_SCHEMA_PATH.read_text(encoding="utf-8"))
    filter_schema = {key: value for key, value in replay_schema().items() if not key.startswith(("$", "x-"))}
    schemas: dict[str, Any] = {
        "ReplayFilter": filter_schema,
        **message_schemas(message_schema),
        **_resource_schemas(message_schema),
        **target_schemas(),
        **_error_schemas(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Relay API",
            "version": _version(),
            "description": "Relay accepts a message once and delivers it to its target URL with retries, "
            "recording every step as an event. The same contract is served by `relay dev` and by the "
            "deployed API Gateway stage.\n\nGenerated by `python -m relay.openapi` from "
            "`schemas/message.schema.json`; do not edit by hand.",
        },
        "servers": [
            {"url": "http://127.0.0.1:8000", "description": "relay dev"},
            {
                "url": "https://{restApiId}.execute-api.{region}.amazonaws.com/v1",
                "description": "A deployed stack (see the stack output ApiUrl)",
                "variables": {"restApiId": {"default": "example"}, "region": {"default": "us-east-1"}},
            },
        ],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The sender's API token (`rly_...`), from `relay senders create` or `relay dev`.",
                }
            },
            "schemas": schemas,
            "responses": {
                name: _error_response(description, codes, details_required)
                for name, (_, description, codes, details_required) in _RESPONSES.items()
            },
        },
    }


# The document's URI for JSON Schema validation of bodies against its schemas.
DOCUMENT_URI = "urn:relay:openapi"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def response_schema_pointer(document: dict[str, Any], path: str, method: str, status: int | str) -> str:
    """JSON pointer (`#/...`) to the schema of the JSON body documented for one answer.

    Raises KeyError when the operation does not document that status.
    """
    response_pointer = f"#/paths/{_escape(path)}/{method.lower()}/responses/{status}"
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        response_pointer = response["$ref"]
    return response_pointer + "/content/application~1json/schema"


def validator_for(document: dict[str, Any], pointer: str) -> Any:
    """A JSON Schema 2020-12 validator (formats checked) for the schema at `pointer` in `document`."""
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": DOCUMENT_URI + pointer}, registry=registry, format_checker=FormatChecker())


def render(document: dict[str, Any] | None = None) -> str:
    return json.dumps(document or build_document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay.openapi", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when the file is not up to date")
    mode.add_argument("--stdout", action="store_true", help="print the document instead of writing it")
    parser.add_argument("--output", type=Path, default=OPENAPI_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale; run `python -m relay.openapi` to regenerate it.", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
