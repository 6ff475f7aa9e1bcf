"""The OpenAPI 3.1 document of the Relay API, generated from `schemas/`.

The document is data: `schemas/openapi/` holds its frame (`document.json`), the route table
(`routes.json`: method, path, operationId, request schema, answers), the response schemas
(`components.json`) and the error catalogue with the reusable error answers (`errors.json`). This
module assembles them with the schemas the code validates against: `schemas/message.schema.json`
becomes the request body of `POST /messages` (OpenAPI 3.1 speaks JSON Schema 2020-12, so it is
embedded as it is, with its `$defs` moved under `components/schemas`), `schemas/target.schema.json`
that of `PUT /targets`, `schemas/replay.schema.json` that of `POST /messages/replay` and
`schemas/notification.schema.json` that of `PUT /notifications`.

The values the code defines (statuses, event types, the error codes of the read-and-act routes and
their HTTP statuses, page sizes, batch limits) appear in the data as `${NAME}` placeholders filled in
from the code, so the document cannot drift silently: `python -m relay.openapi --check` fails when
`schemas/openapi.json` is not what this module writes.

    python -m relay.openapi            # write schemas/openapi.json
    python -m relay.openapi --check    # exit 1 when the file is stale
    python -m relay.openapi --stdout   # print it
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import tomllib
from enum import Enum
from pathlib import Path
from typing import Any

from functions.adapters.messages.store import LISTING_READ_BUDGET
from functions.domain.breaker import BreakerState
from functions.domain.config import MESSAGE_SCHEMA_PATH, SCHEMA_DIR, replay_schema
from functions.domain.model import EventType, Status
from functions.domain.validation import MAX_BATCH_MESSAGES, MAX_BATCH_REQUEST_BYTES
from functions.domain.web.json_text import MAX_NESTING_DEPTH, NESTING_MESSAGE
from functions.services.http_api.api_errors import ERROR_CODES
from functions.services.http_api.operations import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from functions.services.replays import PAGE_SIZE, PAGES_PER_RUN, JobState
from functions.services.reporting.notifications import NOTIFICATION_SCHEMA_PATH
from functions.services.runs import ExecutionType, Workflow
from stacks.paths import OPENAPI_PATH, PYPROJECT

SOURCE_DIR = SCHEMA_DIR / "openapi"
TARGET_SCHEMA_PATH = SCHEMA_DIR / "target.schema.json"

SCHEMA_REF = "#/components/schemas/"
RESPONSE_REF = "#/components/responses/"

# The values of the code that the data in schemas/openapi/ names as `${NAME}`.
LIMITS: dict[str, Any] = {
    "MAX_NESTING_DEPTH": MAX_NESTING_DEPTH,
    "NESTING_MESSAGE": NESTING_MESSAGE,
    "MAX_BATCH_MESSAGES": MAX_BATCH_MESSAGES,
    "MAX_BATCH_REQUEST_BYTES": MAX_BATCH_REQUEST_BYTES,
    "DEFAULT_PAGE_SIZE": DEFAULT_PAGE_SIZE,
    "MAX_PAGE_SIZE": MAX_PAGE_SIZE,
    "LISTING_READ_BUDGET": LISTING_READ_BUDGET,
    "PAGE_SIZE": PAGE_SIZE,
    "PAGES_PER_RUN": PAGES_PER_RUN,
    "JobState.RUNNING": JobState.RUNNING,
    "JobState.SUCCEEDED": JobState.SUCCEEDED,
    "JobState.FAILED": JobState.FAILED,
}
# `${Status}` is the list of every value, `${Status.PENDING}` one of them.
ENUMS: tuple[type[Enum], ...] = (Status, EventType, BreakerState, ExecutionType, Workflow)

_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


def substitute(node: Any, values: dict[str, Any]) -> Any:
    """`node` with its `${NAME}` placeholders filled in: a string that is one placeholder becomes the
    value itself (of any JSON type), a placeholder inside a longer string becomes the value's text."""
    if isinstance(node, dict):
        return {key: substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [substitute(item, values) for item in node]
    if not isinstance(node, str) or "${" not in node:
        return node
    whole = _PLACEHOLDER.fullmatch(node)
    if whole:
        return copy.deepcopy(_value(values, whole.group(1)))
    return _PLACEHOLDER.sub(lambda match: str(_value(values, match.group(1))), node)


def _value(values: dict[str, Any], name: str) -> Any:
    if name not in values:
        raise KeyError(f"schemas/openapi/ names ${{{name}}}, which relay/openapi.py does not define")
    return values[name]


def read_source(name: str) -> dict[str, Any]:
    """One file of schemas/openapi/ as it is written, but for its `$comment`."""
    data: dict[str, Any] = json.loads((SOURCE_DIR / name).read_text(encoding="utf-8"))
    data.pop("$comment", None)
    return data


def load_source(name: str, values: dict[str, Any]) -> Any:
    """One file of schemas/openapi/ with its placeholders filled in."""
    return substitute(read_source(name), values)


def _enum_values() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for enum in ENUMS:
        values[enum.__name__] = [member.value for member in enum]
        values.update({f"{enum.__name__}.{member.name}": member.value for member in enum})
    return values


# -- the error catalogue --------------------------------------------------------------------------


def _error_catalog() -> dict[str, tuple[int | str, str]]:
    """Every error code, with the HTTP status it comes with and what it means (errors.json, the
    codes of raised exceptions taken from functions/services/api_errors.ERROR_CODES)."""
    by_exception = {exception.__name__: answer for exception, answer in ERROR_CODES.items()}
    catalog: dict[str, tuple[int | str, str]] = {}
    for entry in load_source("errors.json", LIMITS)["codes"]:
        if "exception" in entry:
            status, code = by_exception[entry["exception"]]
        else:
            status, code = entry["status"], entry["code"]
        catalog[code] = (status, entry["description"])
    return catalog


ERROR_CATALOG = _error_catalog()


def _error_responses() -> dict[str, dict[str, Any]]:
    """errors.json's reusable answers, each checked to carry only catalogued codes."""
    responses: dict[str, dict[str, Any]] = load_source("errors.json", LIMITS)["responses"]
    for name, response in responses.items():
        unknown = [code for code in response["codes"] if code not in ERROR_CATALOG]
        if unknown:
            raise ValueError(f"errors.json: the response {name} carries codes not in the catalogue: {unknown}")
    return responses


def _error_response(response: dict[str, Any]) -> dict[str, Any]:
    codes = response["codes"]
    narrowed: dict[str, Any] = {"code": {"enum": list(codes)} if len(codes) > 1 else {"const": codes[0]}}
    inner: dict[str, Any] = {"properties": narrowed}
    if response.get("detailsRequired"):
        inner["required"] = ["details"]
    return {
        "description": response["description"],
        "content": {
            "application/json": {
                "schema": {"allOf": [_ref("Error"), {"properties": {"error": inner}}]},
            }
        },
    }


# -- schemas --------------------------------------------------------------------------------------


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


def target_limits_schema() -> dict[str, Any]:
    """`PUT /targets`'s body: schemas/target.schema.json, embedded as it is."""
    limits: dict[str, Any] = json.loads(TARGET_SCHEMA_PATH.read_text(encoding="utf-8"))
    source_id = limits.pop("$id", None)
    limits.pop("$schema", None)
    if source_id:
        limits["x-source"] = source_id
    return limits


def _notification_schema() -> dict[str, Any]:
    """`PUT /notifications`'s body: schemas/notification.schema.json, embedded as it is."""
    source: dict[str, Any] = json.loads(NOTIFICATION_SCHEMA_PATH.read_text(encoding="utf-8"))
    return {key: value for key, value in source.items() if not key.startswith(("$", "x-"))}


def _replay_filter_schema() -> dict[str, Any]:
    return {key: value for key, value in replay_schema().items() if not key.startswith(("$", "x-"))}


# -- paths ----------------------------------------------------------------------------------------


def _json_response(answer: dict[str, Any]) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": _ref(answer["schema"])}
    if "example" in answer:
        media["example"] = answer["example"]
    return {"description": answer["description"], "content": {"application/json": media}}


def _operation(route: dict[str, Any], errors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One route of routes.json as an OpenAPI operation."""
    operation: dict[str, Any] = {
        key: route[key] for key in ("operationId", "summary", "description", "parameters") if key in route
    }
    if "request" in route:
        media = {"schema": _ref(route["request"]["schema"])}
        if "example" in route["request"]:
            media["example"] = route["request"]["example"]
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    responses = {status: _json_response(answer) for status, answer in route["responses"].items()}
    for name in route["errors"]:
        responses[str(errors[name]["status"])] = {"$ref": RESPONSE_REF + name}
    operation["responses"] = responses
    return operation


def _paths(values: dict[str, Any], errors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The route table as `paths`: a path's `{parameters}` described once, before its operations."""
    source = read_source("routes.json")
    table = substitute(source, {**values, **source["examples"]})
    paths: dict[str, Any] = {}
    for route in table["routes"]:
        if route["path"] not in paths:
            names = re.findall(r"\{([^}]+)\}", route["path"])
            paths[route["path"]] = {"parameters": [table["pathParameters"][name] for name in names]} if names else {}
        paths[route["path"]][route["method"]] = _operation(route, errors)
    return paths


# -- the document ---------------------------------------------------------------------------------


def build_document(message_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole OpenAPI document as a dict."""
    if message_schema is None:
        message_schema = json.loads(MESSAGE_SCHEMA_PATH.read_text(encoding="utf-8"))
    values: dict[str, Any] = {
        **LIMITS,
        **_enum_values(),
        "VERSION": _version(),
        "MESSAGE_METHODS": list(message_schema["properties"]["method"]["enum"]),
        "TARGET_LIMITS": target_limits_schema(),
        "ERROR_CODES": list(ERROR_CATALOG),
        "ERROR_CATALOG": "\n".join(f"- `{code}` ({status}): {text}" for code, (status, text) in ERROR_CATALOG.items()),
    }
    errors = _error_responses()
    values["paths"] = _paths(values, errors)
    values["schemas"] = {
        "ReplayFilter": _replay_filter_schema(),
        "NotificationSettingsRequest": _notification_schema(),
        **message_schemas(message_schema),
        **load_source("components.json", values),
    }
    values["responses"] = {name: _error_response(response) for name, response in errors.items()}
    document: dict[str, Any] = load_source("document.json", values)
    return document


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
