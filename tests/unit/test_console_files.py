"""The web console's files as the API function serves them (functions/services/http_api/console.py)."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from functions.api.handler import lambda_handler
from functions.domain.model import Status
from functions.services.http_api import console
from relay.local.emulator import LocalLambdaContext

FILES = sorted(path.name for path in console.CONSOLE_DIR.iterdir() if path.is_file())
SCRIPTS = [name for name in FILES if name.endswith(".js")]


def get(path: str) -> dict[str, Any]:
    """GET `path` as API Gateway's proxy integration hands it to the API function (no authorizer)."""
    event = {
        "resource": path,
        "path": path,
        "httpMethod": "GET",
        "headers": {},
        "queryStringParameters": None,
        "requestContext": {"requestId": "req-1", "stage": "v1"},
        "body": None,
        "isBase64Encoded": False,
    }
    answer: dict[str, Any] = lambda_handler(event, LocalLambdaContext("relay-api"))
    return answer


def headers_of(answer: dict[str, Any]) -> dict[str, str]:
    single = {name: str(value) for name, value in (answer.get("headers") or {}).items()}
    multi = {name: ", ".join(values) for name, values in (answer.get("multiValueHeaders") or {}).items()}
    return {**single, **multi}


def test_every_file_is_text_of_a_known_type_so_the_rest_api_passes_it_through_unchanged() -> None:
    # Given the console's folder (the REST API declares no binary media types)
    # Then every file in it has a text media type the function serves it with
    assert FILES and all(name[name.rindex(".") :] in console.MEDIA_TYPES for name in FILES)
    for name in FILES:
        if name != console.PAGE:
            served = console.asset(name)
            assert served is not None and served.body == (console.CONSOLE_DIR / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["../pyproject.toml", "..", "", "index.html", "functions", "app.js/x", "APP.JS"])
def test_only_the_folders_own_file_names_are_served(name: str) -> None:
    # Given a name that is not one of the folder's files (or is the page, which lives at /console)
    # Then nothing is served for it
    assert console.asset(name) is None


def test_the_page_and_its_files_carry_the_security_headers() -> None:
    # When the page, a script and an unknown file are asked for, as API Gateway invokes the function
    page, script, unknown = get("/console"), get("/console/app.js"), get("/console/nothing.js")
    # Then the page and the script come with their type and a strict Content-Security-Policy
    assert page["statusCode"] == 200 and headers_of(page)["Content-Type"].startswith("text/html")
    assert script["statusCode"] == 200 and headers_of(script)["Content-Type"].startswith("text/javascript")
    for answer in (page, script):
        headers = headers_of(answer)
        assert headers["Content-Security-Policy"] == console.CONTENT_SECURITY_POLICY
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert "'unsafe" not in console.CONTENT_SECURITY_POLICY
    # And an unknown file is Relay's 404
    assert unknown["statusCode"] == 404 and json.loads(unknown["body"])["error"]["code"] == "NOT_FOUND"


def test_console_with_a_trailing_slash_is_sent_to_console_whatever_the_stage_prefix() -> None:
    # When /console/ is asked for (its relative links would miss from there)
    answer = get("/console/")
    # Then the browser is sent to ../console, relative: /v1/console/ leads to /v1/console
    assert answer["statusCode"] == 308 and headers_of(answer)["Location"] == "../console"


def test_the_scripts_never_parse_html_or_run_text() -> None:
    # Given the console's scripts
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc")
    # Then none of them turns text into markup or code
    offenders = {name: forbidden.findall((console.CONSOLE_DIR / name).read_text()) for name in SCRIPTS}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_every_module_a_script_imports_is_one_of_the_folders_files() -> None:
    # Given every import of every script
    imports = {
        (name, imported)
        for name in SCRIPTS
        for imported in re.findall(r"""from\s+["'](.+?)["']""", (console.CONSOLE_DIR / name).read_text())
    }
    # Then each is a relative module of the folder (no CDN, no bare package name)
    assert imports
    assert {(name, imported) for name, imported in imports if imported.removeprefix("./") not in FILES} == set()
    assert all(imported.startswith("./") for _, imported in imports)


def openapi(status_required: bool, extra_paths: tuple[str, ...] = ()) -> dict[str, Any]:
    document = copy.deepcopy(console._openapi_document())
    for parameter in document["paths"]["/messages"]["get"]["parameters"]:
        if parameter["name"] == "status":
            parameter["required"] = status_required
    document["paths"].update({path: {} for path in extra_paths})
    return document


def test_capabilities_come_from_the_code_and_the_openapi_document() -> None:
    # Given this API's OpenAPI document
    served = json.loads(get("/console/capabilities.json")["body"])
    # Then the console offers the code's statuses, replays finished ones, and knows the routes
    assert served["statuses"] == [status.value for status in Status]
    assert set(served["replayableStatuses"]) <= set(served["finishedStatuses"]) <= set(served["statuses"])
    assert served["bulkReplayStatuses"] == ["FAILED", "CANCELLED"]
    assert {"/messages", "/targets", "/targets/health"} <= set(served["paths"])


@pytest.mark.parametrize("required", [True, False])
def test_every_status_is_listed_in_one_call_only_when_the_api_allows_it(required: bool) -> None:
    # Given an API whose GET /messages needs a status, or one that lists every status without one
    # Then the console reads one stream per status only from the first
    assert console.capabilities(openapi(status_required=required))["listsEveryStatus"] is (not required)


def test_a_section_for_schedules_can_appear_once_the_api_has_its_routes() -> None:
    # Given an API that has grown /schedules and /notifications
    paths = console.capabilities(openapi(True, ("/schedules", "/notifications")))["paths"]
    # Then the console is told (console/sections.js shows a section whose `needs` path is listed)
    assert {"/schedules", "/notifications"} <= set(paths)
