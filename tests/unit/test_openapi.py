"""schemas/openapi.json: generated, current, a valid OpenAPI 3.1 document, and true to the code.

The error codes the document lists are checked against every place that answers one: the API
Lambda's exception table, the ingest answers, relay dev's server and API Gateway's gateway
responses in the stack (read as source, so this test needs no CDK synth).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from functions.domain.config import MESSAGE_SCHEMA_PATH
from functions.domain.model import EventType, Status
from functions.services.http_api.api_errors import ERROR_CODES
from functions.services.http_api.responses import MESSAGE_ID_CONFLICT, PAYLOAD_TOO_LARGE, SYSTEM_ERROR, VALIDATION_ERROR
from relay.openapi import (
    ERROR_CATALOG,
    OPENAPI_PATH,
    build_document,
    main,
    render,
    response_schema_pointer,
    validator_for,
)
from stacks.api_mapping import GATEWAY_RESPONSES

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
# relay dev only: /_admin, Host rule
ADMIN_ONLY_CODES = {"SENDER_EXISTS", "SENDER_NOT_FOUND", "SENDER_NOT_CREATED", "MISDIRECTED_REQUEST"}
OPERATIONS = [
    (path, method) for path, item in DOCUMENT["paths"].items() for method in item if method not in ("parameters",)
]


def errors(pointer: str, instance: Any) -> list[str]:
    return [error.message for error in validator_for(DOCUMENT, pointer).iter_errors(instance)]


# -- generated and current ----------------------------------------------------------------------


def test_the_committed_document_is_what_the_generator_writes() -> None:
    # Given the generator, When it checks the committed file, Then it is up to date
    assert main(["--check"]) == 0, "run `python -m relay.openapi` and commit schemas/openapi.json"
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render()


def test_check_fails_on_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text(render().replace('"Relay API"', '"Old API"'), encoding="utf-8")
    assert main(["--check", "--output", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["--check", "--output", str(tmp_path / "missing.json")]) == 1
    # When it writes, Then the check passes
    assert main(["--output", str(stale)]) == 0 and main(["--check", "--output", str(stale)]) == 0


def test_the_module_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay.openapi", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_generation_is_deterministic() -> None:
    assert render(build_document()) == render(build_document())


# -- a valid OpenAPI 3.1 document ---------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    validate(DOCUMENT)  # openapi-spec-validator: raises on any violation


def test_every_reference_resolves() -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(DOCUMENT)
    assert refs
    for ref in refs:
        target: Any = DOCUMENT
        assert ref.startswith("#/"), ref
        for token in ref[2:].split("/"):
            target = target[token.replace("~1", "/").replace("~0", "~")]


def test_every_operation_has_bearer_auth_an_id_and_its_error_answers() -> None:
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": DOCUMENT["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    ids = [DOCUMENT["paths"][path][method]["operationId"] for path, method in OPERATIONS]
    # messages 5, batch, bulk replay 2, targets 3, health, resume, schedules 6, notifications 3
    assert len(set(ids)) == len(ids) == 22
    for path, method in OPERATIONS:
        statuses = set(DOCUMENT["paths"][path][method]["responses"])
        assert {"401", "403", "429", "500"} <= statuses, (path, method)


def test_the_api_table_of_the_design() -> None:
    paths = DOCUMENT["paths"]
    assert set(paths["/messages"]["post"]["responses"]) == {
        "202",
        "200",
        "400",
        "401",
        "403",
        "409",
        "413",
        "415",
        "429",
        "500",
        "504",
    }
    assert set(paths["/messages"]["get"]["responses"]) == {"200", "400", "401", "403", "429", "500"}
    assert set(paths["/messages/{messageId}"]["get"]["responses"]) == {"200", "400", "404", "401", "403", "429", "500"}
    assert set(paths["/messages/{messageId}/replay"]["post"]["responses"]) == {
        "202",
        "404",
        "409",
        "401",
        "403",
        "429",
        "500",
    }
    assert set(paths["/messages/{messageId}/cancel"]["post"]["responses"]) == {
        "200",
        "404",
        "409",
        "401",
        "403",
        "429",
        "500",
    }
    assert set(paths["/messages/batch"]["post"]["responses"]) == {
        "200",
        "400",
        "401",
        "403",
        "413",
        "415",
        "429",
        "500",
        "504",
    }
    query = {p["name"]: p for p in paths["/messages"]["get"]["parameters"]}
    assert query["status"]["required"] is False  # without it: every status
    assert DOCUMENT["components"]["schemas"]["Status"]["enum"] == [s.value for s in Status]
    assert (query["limit"]["schema"]["minimum"], query["limit"]["schema"]["maximum"]) == (1, 100)
    assert query["cursor"]["required"] is False


# -- generated from the message schema ------------------------------------------------------------


def test_the_request_body_is_the_message_schema() -> None:
    source = json.loads(MESSAGE_SCHEMA_PATH.read_text(encoding="utf-8"))
    body = DOCUMENT["paths"]["/messages"]["post"]["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Message"}
    message = DOCUMENT["components"]["schemas"]["Message"]
    # Same properties, rules and limits; only the $defs moved to components
    assert message["required"] == source["required"]
    assert message["additionalProperties"] is False
    assert message["x-relay-limits"] == source["x-relay-limits"]
    for name, rules in source["properties"].items():
        if "$ref" in rules:
            assert message["properties"][name]["$ref"] == "#/components/schemas/Identifier"
            assert DOCUMENT["components"]["schemas"]["Identifier"] == source["$defs"]["identifier"]
        else:
            assert message["properties"][name] == rules


def test_a_changed_message_schema_changes_the_document() -> None:
    source = json.loads(MESSAGE_SCHEMA_PATH.read_text(encoding="utf-8"))
    source["properties"]["headers"]["maxProperties"] = 7
    changed = build_document(source)
    assert changed["components"]["schemas"]["Message"]["properties"]["headers"]["maxProperties"] == 7
    assert render(changed) != render()


def test_message_examples_validate_against_the_request_schema() -> None:
    example = DOCUMENT["paths"]["/messages"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert errors("#/components/schemas/Message", example) == []
    assert errors("#/components/schemas/Message", {**example, "messageId": "has space"})
    assert errors("#/components/schemas/Message", {**example, "extra": 1})
    accepted = DOCUMENT["paths"]["/messages"]["post"]["responses"]["202"]["content"]["application/json"]["example"]
    assert errors(response_schema_pointer(DOCUMENT, "/messages", "post", 202), accepted) == []


# -- the error codes match the code that answers them --------------------------------------------


def _codes_in_server() -> set[tuple[int, str]]:
    source = (ROOT / "relay" / "local" / "server.py").read_text(encoding="utf-8")
    constants = {"SYSTEM_ERROR": SYSTEM_ERROR}
    found = set()
    for status, quoted, name in re.findall(r"_error\(\s*(\d{3}),\s*(?:\"([A-Z_]+)\"|([A-Z_]+))", source):
        found.add((int(status), quoted or constants[name]))
    return found


def _codes_in_gateway_responses() -> set[tuple[str | None, str]]:
    return {(response.status_code, response.code) for response in GATEWAY_RESPONSES}


def _codes_in_ingest() -> set[str]:
    definition = (ROOT / "statemachines" / "ingest.asl.json").read_text(encoding="utf-8")
    return set(re.findall(r'"code":\s*"([A-Z_]+)"', definition))


def test_every_code_the_code_answers_is_documented_with_its_status() -> None:
    documented = set(DOCUMENT["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert documented == set(ERROR_CATALOG)
    answered: set[tuple[int | str | None, str]] = set()
    answered |= {(status, code) for status, code in ERROR_CODES.values()}
    answered |= {(400, VALIDATION_ERROR), (413, PAYLOAD_TOO_LARGE), (409, MESSAGE_ID_CONFLICT), (403, "FORBIDDEN")}
    answered |= {(500, code) for code in _codes_in_ingest()}
    answered |= {pair for pair in _codes_in_server() if pair[1] not in ADMIN_ONLY_CODES}
    answered |= {(status, code) for status, code in _codes_in_gateway_responses()}
    for status, code in answered:
        assert code in documented, f"{code} is answered but not documented"
        if status is not None and code != SYSTEM_ERROR:  # SYSTEM_ERROR is also the 504 of a timeout
            assert ERROR_CATALOG[code][0] == int(status), (code, status)
    # ...and every documented code is answered somewhere
    assert {code for _, code in answered} == documented


def test_each_error_response_narrows_the_code_to_what_the_route_answers() -> None:
    def codes(path: str, method: str, status: int) -> set[str]:
        pointer = response_schema_pointer(DOCUMENT, path, method, status)
        valid = set()
        for code in ERROR_CATALOG:
            body = {
                "error": {"code": code, "message": "m", "requestId": "r", "details": [{"path": "$", "message": "m"}]}
            }
            if not errors(pointer, body):
                valid.add(code)
        return valid

    assert codes("/messages", "post", 400) == {VALIDATION_ERROR}
    assert codes("/messages", "post", 409) == {MESSAGE_ID_CONFLICT}
    assert codes("/messages", "post", 413) == {PAYLOAD_TOO_LARGE}
    assert codes("/messages", "post", 401) == {"UNAUTHORIZED"}
    assert codes("/messages", "post", 429) == {"THROTTLED"}
    assert codes("/messages", "post", 500) == {SYSTEM_ERROR}
    assert codes("/messages/{messageId}", "get", 404) == {"MESSAGE_NOT_FOUND", "NOT_FOUND"}
    assert codes("/messages/{messageId}/replay", "post", 409) == {"MESSAGE_NOT_FINISHED", "MESSAGE_EXPIRED"}
    assert codes("/messages/{messageId}/cancel", "post", 409) == {"MESSAGE_ALREADY_FINISHED"}
    # A 400 must name its fields
    pointer = response_schema_pointer(DOCUMENT, "/messages", "post", 400)
    assert errors(pointer, {"error": {"code": VALIDATION_ERROR, "message": "m", "requestId": "r"}})
    assert errors(
        pointer,
        {
            "error": {
                "code": VALIDATION_ERROR,
                "message": "m",
                "requestId": "r",
                "details": [{"path": "x", "message": "m"}],
            }
        },
    )


def test_statuses_and_event_types_come_from_the_model() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert schemas["EventType"]["enum"] == [e.value for e in EventType]
    assert schemas["Status"]["enum"] == [s.value for s in Status]


def test_an_undocumented_status_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        response_schema_pointer(DOCUMENT, "/messages/{messageId}", "get", 418)


def test_the_batch_request_and_its_results_are_described() -> None:
    from functions.domain.validation import MAX_BATCH_MESSAGES

    # Given the batch example and an answer with one result of each kind
    body = DOCUMENT["paths"]["/messages/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/BatchRequest"}
    assert errors("#/components/schemas/BatchRequest", body["example"]) == []
    assert errors("#/components/schemas/BatchRequest", {"messages": []})
    assert errors("#/components/schemas/BatchRequest", {"messages": [{}] * (MAX_BATCH_MESSAGES + 1)})
    assert errors("#/components/schemas/BatchRequest", [body["example"]["messages"][0]])
    ok = DOCUMENT["paths"]["/messages/batch"]["post"]["responses"]["200"]["content"]["application/json"]["example"]
    pointer = response_schema_pointer(DOCUMENT, "/messages/batch", "post", 200)
    error = {
        "error": {
            "code": VALIDATION_ERROR,
            "message": "m",
            "requestId": "r:1",
            "details": [{"path": "$", "message": "m"}],
        }
    }
    answer = {"results": [*ok["results"], {"statusCode": 400, "body": error}]}
    # Then they validate, and a result whose status does not fit its body does not
    assert errors(pointer, answer) == []
    assert errors(pointer, {"results": [{"statusCode": 202, "body": error}]})


def test_the_target_routes_answer_what_the_handler_answers() -> None:
    # Given the target routes of the document
    paths = DOCUMENT["paths"]
    # Then PUT validates its body against schemas/target.schema.json, and DELETE may answer TARGET_NOT_FOUND
    assert set(paths["/targets"]["put"]["responses"]) >= {"200", "400", "401", "403", "429", "500"}
    assert set(paths["/targets/{targetId}"]["delete"]["responses"]) >= {"200", "404"}
    assert errors("#/components/schemas/TargetLimits", {"origin": "https://a.example", "ratePerSecond": 2}) == []
    assert errors("#/components/schemas/TargetLimits", {"origin": "https://a.example", "ratePerSecond": 0}) != []
    view = {
        "id": "https:a.example",
        "origin": "https://a.example",
        "ratePerSecond": 2,
        "maxConcurrency": None,
        "updatedAt": "2026-01-31T12:00:00Z",
        "inFlight": 0,
        "tokens": 2,
    }
    assert errors("#/components/schemas/TargetList", {"items": [view]}) == []
