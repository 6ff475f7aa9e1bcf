"""The OpenAPI document against the real answers of `relay dev` (in-process, real HTTP).

Every route is driven into each answer it documents (415 and 504 included: `relay dev` runs API
Gateway's rules for POST /messages and /messages/batch), and each body is validated with jsonschema against the schema
the document gives for that operation and status, as served by the server itself at
GET /openapi.json. The last test checks that every documented answer was seen.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from openapi_spec_validator import validate

from functions.domain.config import get_settings
from functions.domain.validation import ENVELOPE_ALLOWANCE_BYTES, MAX_BATCH_REQUEST_BYTES
from relay.client import ApiAnswer, RelayClient
from relay.local.apigateway.gateway import INTEGRATION_TIMEOUT_SECONDS
from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.local.targets import TargetServer
from relay.openapi import OPENAPI_PATH, response_schema_pointer, validator_for
from tests.conftest import make_message
from tests.support import expire_stored_message, wait_for

# (method, path template, status) -> times seen
SEEN: dict[tuple[str, str, int], int] = {}


@pytest.fixture(scope="module")
def document(relay: LocalRelay) -> dict[str, Any]:
    answer = RelayClient(relay.url).request("GET", "/openapi.json")
    assert answer.status == 200
    served: dict[str, Any] = answer.body
    assert served == json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    validate(served)
    return served


@pytest.fixture(scope="module")
def client(relay: LocalRelay) -> RelayClient:
    return RelayClient(relay.url, token=relay.dev_token)


def conforms(document: dict[str, Any], method: str, path: str, answer: ApiAnswer, status: int) -> Any:
    """The answer has `status`, and its body is valid against the documented schema."""
    assert answer.status == status, answer
    pointer = response_schema_pointer(document, path, method, status)
    problems = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator_for(document, pointer).iter_errors(answer.body)
    ]
    assert problems == [], f"{method.upper()} {path} {status}: {problems}\n{answer.body}"
    SEEN[(method, path, status)] = SEEN.get((method, path, status), 0) + 1
    return answer.body


def dev_message(**fields: Any) -> dict[str, Any]:
    return make_message(**{"senderId": DEV_SENDER, **fields})


def test_send_message(document: dict[str, Any], client: RelayClient, target: TargetServer, relay: LocalRelay) -> None:
    message = dev_message(targetUrl=f"{target.url}/ok")
    accepted = conforms(document, "post", "/messages", client.send(message), 202)
    assert accepted["status"] == "PENDING" and accepted["messageId"] == message["messageId"]
    duplicate = conforms(document, "post", "/messages", client.send(message), 200)
    assert duplicate["duplicate"] is True
    conflict = conforms(document, "post", "/messages", client.send({**message, "body": "other"}), 409)
    assert conflict["error"]["code"] == "MESSAGE_ID_CONFLICT"

    invalid = conforms(document, "post", "/messages", client.send(dev_message(targetUrl="ftp://x", extra=1)), 400)
    assert {d["path"] for d in invalid["error"]["details"]} == {"$.targetUrl", "$.extra"}
    not_json = conforms(document, "post", "/messages", client.send(b"{not json"), 400)
    assert not_json["error"]["details"][0]["path"] == "$"

    other_sender = conforms(document, "post", "/messages", client.send(dev_message(senderId="mallory")), 403)
    assert other_sender["error"]["details"] == [{"path": "$.senderId", "message": other_sender["error"]["message"]}]

    limit = get_settings().max_body_bytes
    big_body = conforms(document, "post", "/messages", client.send(dev_message(body="x" * (limit + 1))), 413)
    assert big_body["error"]["details"][0]["path"] == "$.body"
    huge_request = client.send(b"x" * (limit + ENVELOPE_ALLOWANCE_BYTES + 1))
    assert conforms(document, "post", "/messages", huge_request, 413)["error"]["code"] == "PAYLOAD_TOO_LARGE"

    as_text = _post_as(relay, client, dev_message(), "text/plain")
    assert conforms(document, "post", "/messages", as_text, 415)["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"

    nobody = RelayClient(relay.url, token="rly_not-a-token")
    assert conforms(document, "post", "/messages", nobody.send(message), 401)["error"]["code"] == "UNAUTHORIZED"


def send_batch(client: RelayClient, messages: Any) -> ApiAnswer:
    body = messages if isinstance(messages, bytes) else json.dumps({"messages": messages}).encode()
    return client.request("POST", "/messages/batch", body)


def test_send_messages(document: dict[str, Any], client: RelayClient, target: TargetServer, relay: LocalRelay) -> None:
    # One batch with every per-message answer: accepted, duplicate (twice in the batch), conflict,
    # invalid, another sender's, a body over the limit
    accepted = dev_message(targetUrl=f"{target.url}/ok")
    batch = [
        accepted,
        accepted,
        {**accepted, "body": "other"},
        dev_message(targetUrl="ftp://x"),
        dev_message(senderId="mallory"),
        dev_message(body="x" * (get_settings().max_body_bytes + 1)),
    ]
    answer = conforms(document, "post", "/messages/batch", send_batch(client, batch), 200)
    assert [result["statusCode"] for result in answer["results"]] == [202, 200, 409, 400, 403, 413]

    envelope = conforms(document, "post", "/messages/batch", send_batch(client, []), 400)
    assert envelope["error"]["details"][0]["path"] == "$.messages"
    quotes = [dev_message(body={"q": '"' * 2000}) for _ in range(40)]
    too_large = conforms(document, "post", "/messages/batch", send_batch(client, quotes), 413)
    assert too_large["error"]["details"][0]["path"] == "$.messages"
    huge_request = send_batch(client, b"x" * (MAX_BATCH_REQUEST_BYTES + 1))
    assert conforms(document, "post", "/messages/batch", huge_request, 413)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    as_text = _post_as(relay, client, {"messages": [dev_message()]}, "text/plain", "/messages/batch")
    assert conforms(document, "post", "/messages/batch", as_text, 415)["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    nobody = RelayClient(relay.url, token="rly_not-a-token")
    assert conforms(document, "post", "/messages/batch", send_batch(nobody, [accepted]), 401)


def test_forbidden_and_throttled_senders(document: dict[str, Any], relay: LocalRelay) -> None:
    admin = RelayClient(relay.url, token=relay.admin_token)
    disabled_id, throttled_id = f"off-{uuid.uuid4().hex[:6]}", f"slow-{uuid.uuid4().hex[:6]}"
    disabled_token = admin.admin("POST", "/senders", {"senderId": disabled_id}).body["token"]
    assert admin.admin("POST", f"/senders/{disabled_id}/disable", {}).status == 200
    throttled = admin.admin("POST", "/senders", {"senderId": throttled_id, "ratePerSecond": 0.001, "burst": 1})
    throttled_token = throttled.body["token"]

    disabled = RelayClient(relay.url, token=disabled_token)
    calls = [
        ("post", "/messages", lambda c: c.send(make_message(senderId=disabled_id))),
        ("post", "/messages/batch", lambda c: send_batch(c, [make_message(senderId=disabled_id)])),
        ("get", "/messages", lambda c: c.list("FAILED")),
        ("get", "/messages/{messageId}", lambda c: c.status("any")),
        ("post", "/messages/{messageId}/replay", lambda c: c.replay("any")),
        ("post", "/messages/{messageId}/cancel", lambda c: c.cancel("any")),
        ("post", "/messages/replay", lambda c: c.replay_many({"status": "FAILED"})),
        ("get", "/replays/{jobId}", lambda c: c.replay_job("any")),
        ("put", "/targets", lambda c: c.put_target("https://a.example", 1, None)),
        ("get", "/targets", lambda c: c.targets()),
        ("delete", "/targets/{targetId}", lambda c: c.delete_target("https://a.example")),
        ("get", "/targets/health", lambda c: c.target_health("https://example.com")),
        ("post", "/targets/resume", lambda c: c.resume_target("https://example.com")),
        *SCHEDULE_CALLS,
        ("put", "/notifications", lambda c: c.put_notifications("https://ops.example.com/x", ["message.failed"])),
        ("get", "/notifications", lambda c: c.notifications()),
        ("delete", "/notifications", lambda c: c.delete_notifications()),
    ]
    for method, path, call in calls:
        assert conforms(document, method, path, call(disabled), 403)["error"]["code"] == "FORBIDDEN"
        assert conforms(document, method, path, call(RelayClient(relay.url)), 401)["error"]["code"] == "UNAUTHORIZED"

    slow = RelayClient(relay.url, token=throttled_token)
    assert slow.list("FAILED").status == 200  # the burst of one
    for method, path, call in calls:
        assert conforms(document, method, path, call(slow), 429)["error"]["code"] == "THROTTLED"


def _post_as(
    relay: LocalRelay, client: RelayClient, message: dict[str, Any], content_type: str, path: str = "/messages"
) -> ApiAnswer:
    """POST /messages (or `path`) with another Content-Type than the client's JSON."""
    request = urllib.request.Request(
        f"{relay.url}{path}",
        json.dumps(message).encode(),
        {"Content-Type": content_type, "Authorization": f"Bearer {client.token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return ApiAnswer(response.status, json.loads(response.read()))
    except urllib.error.HTTPError as refused:
        return ApiAnswer(refused.code, json.loads(refused.read()))


def test_status_list_replay_cancel(document: dict[str, Any], client: RelayClient, target: TargetServer) -> None:
    delivered = dev_message(messageId=f"ok:{uuid.uuid4().hex[:8]}", targetUrl=f"{target.url}/ok", headers={"X-A": "1"})
    failed = dev_message(targetUrl=f"{target.url}/missing")
    hanging = dev_message(targetUrl=f"{target.url}/hang")
    for message in (delivered, failed, hanging):
        assert client.send(message).status == 202
    wait_for(client, delivered["messageId"], ("DELIVERED",))
    wait_for(client, failed["messageId"], ("FAILED",))
    wait_for(client, hanging["messageId"], ("DELIVERING",))

    # GET /messages/{messageId}: the status view (an id with ':' is percent-encoded by the client)
    view = conforms(document, "get", "/messages/{messageId}", client.status(delivered["messageId"]), 200)
    assert view["status"] == "DELIVERED" and view["events"] and view["executions"]
    assert [e["type"] for e in view["events"]][:2] == ["RECEIVED", "ENQUEUED"]
    failed_view = conforms(document, "get", "/messages/{messageId}", client.status(failed["messageId"]), 200)
    assert failed_view["lastError"]
    missing = conforms(document, "get", "/messages/{messageId}", client.status("no-such-message"), 404)
    assert missing["error"]["code"] == "MESSAGE_NOT_FOUND"
    too_long = conforms(document, "get", "/messages/{messageId}", client.status("x" * 3000), 404)
    assert too_long["error"]["code"] == "MESSAGE_NOT_FOUND"
    bad_cursor = client.request("GET", f"/messages/{delivered['messageId']}?eventsCursor=abc")
    invalid = conforms(document, "get", "/messages/{messageId}", bad_cursor, 400)
    assert invalid["error"]["details"][0]["path"] == "$.eventsCursor"

    # GET /messages: pages, newest first, and query errors
    more = [dev_message(targetUrl=f"{target.url}/missing") for _ in range(2)]
    for message in more:
        assert client.send(message).status == 202
    for message in more:
        wait_for(client, message["messageId"], ("FAILED",))
    first = conforms(document, "get", "/messages", client.list("FAILED", limit=1), 200)
    assert len(first["items"]) == 1 and first["nextCursor"]
    second = conforms(document, "get", "/messages", client.list("FAILED", limit=1, cursor=first["nextCursor"]), 200)
    assert second["items"][0]["messageId"] != first["items"][0]["messageId"]
    for query in ("status=BOGUS", "status=FAILED&limit=0", "status=FAILED&limit=%C2%B2", "status=FAILED&cursor=abc"):
        bad = conforms(document, "get", "/messages", client.request("GET", f"/messages?{query}"), 400)
        assert bad["error"]["details"][0]["path"].startswith("$.")
    # Without a status: every status, newest first
    every = conforms(document, "get", "/messages", client.request("GET", "/messages?limit=2"), 200)
    assert [item["messageId"] for item in every["items"]] == [message["messageId"] for message in more[::-1]]

    # POST /messages/{messageId}/replay
    replayed = conforms(document, "post", "/messages/{messageId}/replay", client.replay(failed["messageId"]), 202)
    assert replayed["run"] == 1
    busy = conforms(document, "post", "/messages/{messageId}/replay", client.replay(hanging["messageId"]), 409)
    assert busy["error"]["code"] == "MESSAGE_NOT_FINISHED"
    gone = conforms(document, "post", "/messages/{messageId}/replay", client.replay("no-such-message"), 404)
    assert gone["error"]["code"] == "MESSAGE_NOT_FOUND"
    _expire(delivered)
    expired = conforms(document, "post", "/messages/{messageId}/replay", client.replay(delivered["messageId"]), 409)
    assert expired["error"]["code"] == "MESSAGE_EXPIRED"

    # POST /messages/replay and GET /replays/{jobId}
    job = conforms(document, "post", "/messages/replay", client.replay_many({"status": "FAILED"}), 202)
    assert job["matched"] >= 0 and job["jobId"]
    assert conforms(document, "get", "/replays/{jobId}", client.replay_job(job["jobId"]), 200)["jobId"] == job["jobId"]
    bad_filter = conforms(document, "post", "/messages/replay", client.replay_many({"status": "DELIVERED"}), 400)
    assert bad_filter["error"]["details"][0]["path"] == "$.status"
    no_job = conforms(document, "get", "/replays/{jobId}", client.replay_job("no-such-job"), 404)
    assert no_job["error"]["code"] == "REPLAY_NOT_FOUND"

    # POST /messages/{messageId}/cancel
    cancelled = conforms(document, "post", "/messages/{messageId}/cancel", client.cancel(hanging["messageId"]), 200)
    assert cancelled["status"] == "CANCELLED"
    again = conforms(document, "post", "/messages/{messageId}/cancel", client.cancel(hanging["messageId"]), 409)
    assert again["error"]["code"] == "MESSAGE_ALREADY_FINISHED"
    unknown = conforms(document, "post", "/messages/{messageId}/cancel", client.cancel("no-such-message"), 404)
    assert unknown["error"]["code"] == "MESSAGE_NOT_FOUND"

    # GET /targets/health and POST /targets/resume (the circuit breaker)
    health = conforms(document, "get", "/targets/health", client.target_health(f"{target.url}/ok"), 200)
    assert health["state"] == "CLOSED"
    assert conforms(document, "get", "/targets/health", client.target_health("not a url"), 400)
    resumed = conforms(document, "post", "/targets/resume", client.resume_target(target.url), 200)
    assert resumed["state"] == "CLOSED"
    assert conforms(document, "post", "/targets/resume", client.resume_target("not a url"), 400)


def test_targets(document: dict[str, Any], client: RelayClient) -> None:
    # PUT /targets: stored as normalised; a bad body names its fields
    stored = conforms(document, "put", "/targets", client.put_target("HTTPS://Hooks.Example.com", 2, 1), 200)
    assert stored["origin"] == "https://hooks.example.com"
    bad = conforms(document, "put", "/targets", client.request("PUT", "/targets", b'{"origin": "x", "extra": 1}'), 400)
    assert {d["path"] for d in bad["error"]["details"]} == {"$.extra"}
    # GET /targets: limits and live counts
    listed = conforms(document, "get", "/targets", client.targets(), 200)
    assert [(t["id"], t["origin"]) for t in listed["items"]] == [
        ("https:hooks.example.com", "https://hooks.example.com")
    ]
    # DELETE /targets/{targetId}: an origin percent-encoded whole matches no route, as API Gateway
    # (which decodes %2F before routing) answers it
    encoded = client.request("DELETE", "/targets/https%3A%2F%2Fhooks.example.com")
    assert (encoded.status, encoded.body["error"]["code"]) == (404, "NOT_FOUND")
    # The id as listed deletes it; a second time there is none
    deleted = conforms(
        document, "delete", "/targets/{targetId}", client.request("DELETE", "/targets/https:hooks.example.com"), 200
    )
    assert deleted == {"id": "https:hooks.example.com", "origin": "https://hooks.example.com", "deleted": True}
    gone = conforms(document, "delete", "/targets/{targetId}", client.delete_target("https://hooks.example.com"), 404)
    assert gone["error"]["code"] == "TARGET_NOT_FOUND"


def test_notifications(document: dict[str, Any], client: RelayClient) -> None:
    # PUT /notifications: stored; a bad body names its fields
    url = "https://ops.example.com/relay-events"
    stored = conforms(document, "put", "/notifications", client.put_notifications(url, ["message.failed"]), 200)
    assert (stored["url"], stored["events"]) == (url, ["message.failed"])
    bad = conforms(document, "put", "/notifications", client.put_notifications("ftp://x", ["nope"]), 400)
    assert {d["path"] for d in bad["error"]["details"]} == {"$.url", "$.events[0]"}
    # GET /notifications: the setting; DELETE removes it; then there is none
    assert conforms(document, "get", "/notifications", client.notifications(), 200)["url"] == url
    assert conforms(document, "delete", "/notifications", client.delete_notifications(), 200) == {"deleted": True}
    missing = conforms(document, "get", "/notifications", client.notifications(), 404)
    assert missing["error"]["code"] == "NOTIFICATIONS_NOT_SET"
    gone = conforms(document, "delete", "/notifications", client.delete_notifications(), 404)
    assert gone["error"]["code"] == "NOTIFICATIONS_NOT_SET"


def _expire(message: dict[str, Any]) -> None:
    expire_stored_message(DEV_SENDER, message["messageId"])


SCHEDULE = {"cron": "*/5 * * * *", "message": {"targetUrl": "https://hooks.example.com/tick"}}
SCHEDULE_CALLS = [
    ("get", "/schedules", lambda c: c.schedules()),
    ("put", "/schedules/{name}", lambda c: c.put_schedule("any", SCHEDULE)),
    ("get", "/schedules/{name}", lambda c: c.schedule("any")),
    ("delete", "/schedules/{name}", lambda c: c.delete_schedule("any")),
    ("post", "/schedules/{name}/pause", lambda c: c.pause_schedule("any")),
    ("post", "/schedules/{name}/resume", lambda c: c.pause_schedule("any", paused=False)),
]


def test_schedules(document: dict[str, Any], client: RelayClient) -> None:
    name = f"every-5-{uuid.uuid4().hex[:6]}"
    # PUT /schedules/{name}: stored with its next firing; a bad body names its fields
    stored = conforms(document, "put", "/schedules/{name}", client.put_schedule(name, SCHEDULE), 200)
    assert (stored["name"], stored["timezone"], stored["paused"]) == (name, "UTC", False)
    bad = {"cron": "every day", "timezone": "Mars/Base", "message": {"targetUrl": "ftp://x"}}
    refused = conforms(document, "put", "/schedules/{name}", client.put_schedule(name, bad), 400)
    paths = {detail["path"] for detail in refused["error"]["details"]}
    assert {"$.cron", "$.timezone", "$.message.targetUrl"} <= paths
    # GET /schedules and /schedules/{name}
    assert name in [item["name"] for item in conforms(document, "get", "/schedules", client.schedules(), 200)["items"]]
    assert conforms(document, "get", "/schedules/{name}", client.schedule(name), 200)["cron"] == "*/5 * * * *"
    # pause and resume
    assert conforms(document, "post", "/schedules/{name}/pause", client.pause_schedule(name), 200)["paused"] is True
    resumed = conforms(document, "post", "/schedules/{name}/resume", client.pause_schedule(name, paused=False), 200)
    assert resumed["paused"] is False
    # DELETE, then each route answers 404 for it, and 400 for a name no schedule can have
    assert conforms(document, "delete", "/schedules/{name}", client.delete_schedule(name), 200)["deleted"] is True
    for method, path, call in SCHEDULE_CALLS[2:]:
        assert conforms(document, method, path, call(client), 404)["error"]["code"] == "SCHEDULE_NOT_FOUND"
    no_route = client.request("PUT", "/schedules/a/b", json.dumps(SCHEDULE).encode())
    assert conforms(document, "put", "/schedules/{name}", no_route, 404)["error"]["code"] == "NOT_FOUND"
    for method, path, answer in [
        ("put", "/schedules/{name}", client.put_schedule("bad name!", SCHEDULE)),
        ("get", "/schedules/{name}", client.schedule("bad name!")),
        ("delete", "/schedules/{name}", client.delete_schedule("bad name!")),
        ("post", "/schedules/{name}/pause", client.pause_schedule("bad name!")),
        ("post", "/schedules/{name}/resume", client.pause_schedule("bad name!", paused=False)),
    ]:
        assert conforms(document, method, path, answer, 400)["error"]["details"][0]["path"] == "$.name"


def test_system_errors(document: dict[str, Any], client: RelayClient, relay: LocalRelay) -> None:
    assert relay.local is not None

    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("boom with internal detail")

    def slow(event: dict[str, Any], context: Any) -> Any:
        time.sleep(1.0)
        raise RuntimeError("too late")

    relay.local.overrides["relay-dedup"] = broken
    relay.local.overrides["relay-api"] = broken
    try:
        failure = conforms(document, "post", "/messages", client.send(dev_message()), 500)
        assert failure["error"]["code"] == "SYSTEM_ERROR" and "boom" not in json.dumps(failure)
        failed_batch = conforms(document, "post", "/messages/batch", send_batch(client, [dev_message()]), 500)
        assert failed_batch["error"]["code"] == "SYSTEM_ERROR" and "boom" not in json.dumps(failed_batch)
        # No answer within API Gateway's integration timeout: 504
        assert relay.server is not None
        relay.server.gateway.integration_timeout = 0.2
        relay.local.overrides["relay-dedup"] = slow
        timed_out = conforms(document, "post", "/messages", client.send(dev_message()), 504)
        assert timed_out["error"]["code"] == "SYSTEM_ERROR"
        batch_timed_out = conforms(document, "post", "/messages/batch", send_batch(client, [dev_message()]), 504)
        assert batch_timed_out["error"]["code"] == "SYSTEM_ERROR"
        for method, path, answer in [
            ("get", "/messages", client.list("FAILED")),
            ("get", "/messages/{messageId}", client.status("any")),
            ("post", "/messages/{messageId}/replay", client.replay("any")),
            ("post", "/messages/{messageId}/cancel", client.cancel("any")),
            ("post", "/messages/replay", client.replay_many({"status": "FAILED"})),
            ("get", "/replays/{jobId}", client.replay_job("any")),
            ("put", "/targets", client.put_target("https://a.example", 1, None)),
            ("get", "/targets", client.targets()),
            ("delete", "/targets/{targetId}", client.delete_target("https://a.example")),
            ("get", "/targets/health", client.target_health("https://example.com")),
            ("post", "/targets/resume", client.resume_target("https://example.com")),
            *[(method, path, call(client)) for method, path, call in SCHEDULE_CALLS],
            ("put", "/notifications", client.put_notifications("https://ops.example.com/x", ["message.failed"])),
            ("get", "/notifications", client.notifications()),
            ("delete", "/notifications", client.delete_notifications()),
        ]:
            body = conforms(document, method, path, answer, 500)
            assert body["error"]["code"] == "SYSTEM_ERROR" and "boom" not in json.dumps(body)
    finally:
        relay.local.overrides.clear()
        if relay.server is not None:
            relay.server.gateway.integration_timeout = INTEGRATION_TIMEOUT_SECONDS


def test_every_documented_answer_was_seen(document: dict[str, Any]) -> None:
    documented = {
        (method, path, int(status))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
        for status in operation["responses"]
    }
    assert documented - set(SEEN) == set()
    assert set(SEEN) <= documented
