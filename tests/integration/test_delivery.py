"""Delivery end to end in one process: the real dispatcher, delivery state machines and handlers on
moto, delivering over real HTTP to local targets."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from standardwebhooks.webhooks import Webhook

from functions.adapters.repository import MessageRepository
from functions.adapters.secrets import SigningSecrets, secret_name
from functions.deliver import handler as deliver_handler
from functions.domain.config import get_settings
from functions.domain.exceptions import ClaimHeld, DeliveryRetryable
from functions.domain.model import MessageKey
from functions.services import delivery
from relay.admin import SenderAdmin
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.support import (
    FAST_ATTEMPTS,
    INLINE_ATTEMPTS,
    NO_BREAKER,
    SLOW_ATTEMPTS,
    delivery_relay,
    event_types,
    expire_stored_message,
    send_accepted,
    wait_until_terminal,
)

ALL_ATTEMPTS = INLINE_ATTEMPTS + FAST_ATTEMPTS + SLOW_ATTEMPTS


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    # Every test here shares one target origin and many of them fail every attempt on purpose.
    with delivery_relay(NO_BREAKER) as running:
        yield running


def test_healthy_target_gets_the_exact_request_signed(client: RelayClient, target: TargetServer) -> None:
    # Given a message with a method, headers and a body with non-ASCII text
    body = '{"name": "Zoë", "amount": 12.50}'
    message = send_accepted(client, targetUrl=f"{target.url}/ok", method="PUT", headers={"X-Order": "42"}, body=body)
    # When it is delivered
    record = wait_until_terminal(client, message)
    # Then it is DELIVERED after one attempt
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)
    assert event_types(record) == ["RECEIVED", "ENQUEUED", "ATTEMPT_STARTED", "DELIVERED"]
    # And the target received method, headers and body byte-exact
    [request] = [r for r in target.requests_to("/ok") if r.header("webhook-id") == f"dev:{message['messageId']}"]
    assert request.method == "PUT"
    assert request.header("X-Order") == "42"
    assert request.body == body.encode("utf-8")
    # And the Standard Webhooks signature verifies with the sender's secret
    secret = SigningSecrets().get("dev")
    assert secret is not None
    verified = Webhook(secret).verify(request.body, {k.lower(): v for k, v in request.headers.items()})
    assert verified == json.loads(body)


def test_target_failing_twice_then_ok_is_delivered_on_attempt_three(client: RelayClient, target: TargetServer) -> None:
    message = send_accepted(client, targetUrl=f"{target.url}/flaky/2")
    record = wait_until_terminal(client, message)
    assert (record["status"], record["attempts"]) == ("DELIVERED", 3)
    failures = [event for event in record["events"] if event["type"] == "ATTEMPT_FAILED"]
    assert [event["statusCode"] for event in failures] == [503, 503]
    assert "lastError" not in record


def test_always_500_fails_after_the_configured_attempts_with_a_dead_letter(
    client: RelayClient, target: TargetServer, relay: LocalRelay
) -> None:
    # Given a target that always answers 500
    message = send_accepted(client, targetUrl=f"{target.url}/fail")
    # When the fast and slow lanes are exhausted
    record = wait_until_terminal(client, message, timeout=60)
    # Then the message is FAILED after every configured attempt, with its whole history
    history = json.dumps(record["events"], indent=1)
    assert record["status"] == "FAILED", history
    assert record["attempts"] == ALL_ATTEMPTS, history
    types = event_types(record)
    assert types.count("ATTEMPT_STARTED") == types.count("ATTEMPT_FAILED") == ALL_ATTEMPTS, history
    assert types.index("MOVED_TO_SLOW_LANE") == 2 + 2 * (INLINE_ATTEMPTS + FAST_ATTEMPTS), history
    assert types[-1] == "FAILED", history
    assert "retries exhausted" in record["lastError"]
    # And it lands on the failed-messages queue with its reason
    assert relay.local is not None
    sqs = boto3.client("sqs", region_name="us-east-1")
    # (earlier tests' failures share the queue: read it all, deleting what was read)
    url, bodies = relay.local.queue_urls["relay-failed"], []
    for _ in range(20):
        letters = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not letters:
            break
        bodies += [json.loads(m["Body"]) for m in letters]
        for letter in letters:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=letter["ReceiptHandle"])
    assert any(b["messageId"] == message["messageId"] and "HTTP 500" in b["reason"] for b in bodies)


def test_404_fails_after_one_attempt(client: RelayClient, target: TargetServer) -> None:
    message = send_accepted(client, targetUrl=f"{target.url}/missing")
    record = wait_until_terminal(client, message)
    assert (record["status"], record["attempts"]) == ("FAILED", 1)
    assert record["lastError"] == "HTTP 404: not retried"


def test_redirect_is_not_followed(client: RelayClient, target: TargetServer) -> None:
    before = len(target.requests_to("/ok"))
    message = send_accepted(client, targetUrl=f"{target.url}/redirect")
    record = wait_until_terminal(client, message)
    assert (record["status"], record["attempts"]) == ("FAILED", 1)
    assert "redirects are not followed" in record["lastError"]
    assert len(target.requests_to("/ok")) == before


def test_target_that_never_answers_times_out_and_is_retried(client: RelayClient, target: TargetServer) -> None:
    message = send_accepted(client, targetUrl=f"{target.url}/hang")
    record = wait_until_terminal(client, message, timeout=90)
    assert record["status"] == "FAILED"
    failures = [event for event in record["events"] if event["type"] == "ATTEMPT_FAILED"]
    assert len(failures) == ALL_ATTEMPTS
    assert {event["error"] for event in failures} == {"TargetTimeout"}


def test_429_records_retry_after_and_is_retried(client: RelayClient, target: TargetServer) -> None:
    message = send_accepted(client, targetUrl=f"{target.url}/throttle")
    record = wait_until_terminal(client, message, timeout=60)
    failures = [event for event in record["events"] if event["type"] == "ATTEMPT_FAILED"]
    assert len(failures) == ALL_ATTEMPTS
    assert failures[0]["statusCode"] == 429 and failures[0]["retryAfterSeconds"] == 1


def test_redelivered_queue_message_never_delivers_twice(client: RelayClient, target: TargetServer) -> None:
    # Given a delivered message
    message = send_accepted(client, targetUrl=f"{target.url}/ok")
    wait_until_terminal(client, message)
    hits = len(target.requests_to("/ok"))
    # When its queue message arrives again
    outcome = delivery.dispatch(
        delivery.RunInput(MessageKey(message["senderId"], message["messageId"]), 0),
        delivery.dependencies(get_settings()),
    )
    # Then nothing is started and the target is not called again
    assert outcome == delivery.DispatchOutcome.TERMINAL == "terminal"
    time.sleep(0.3)
    assert len(target.requests_to("/ok")) == hits


def test_duplicate_dispatch_while_running_starts_one_run(client: RelayClient, target: TargetServer) -> None:
    # Given a message whose delivery is in flight (the target is slow)
    message = send_accepted(client, targetUrl=f"{target.url}/slow/600")  # under the 1 s total timeout
    deadline = time.monotonic() + 30
    while client.status(message["messageId"]).body.get("status") != "DELIVERING":
        assert time.monotonic() < deadline, "the first run never started"
        time.sleep(0.02)
    # When the queue message is dispatched again
    # Then the second dispatch does not attempt: it keeps the queue message (SQS delivers it again
    # after its visibility timeout, in case the first dispatcher died)
    with pytest.raises(ClaimHeld):
        delivery.dispatch(
            delivery.RunInput(MessageKey(message["senderId"], message["messageId"]), 0),
            delivery.dependencies(get_settings()),
        )
    # And one attempt delivers it
    record = wait_until_terminal(client, message)
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)


def test_expired_message_is_never_sent(client: RelayClient, target: TargetServer) -> None:
    # Given a stored message whose expiry has passed before its delivery
    message = send_accepted(client, targetUrl=f"{target.url}/slow/1")
    wait_until_terminal(client, message)
    repository = MessageRepository(get_settings().table_name)
    key = MessageKey(message["senderId"], message["messageId"])
    expired = make_message(targetUrl=f"{target.url}/ok", senderId="dev")
    assert client.send(expired).status == 202
    wait_until_terminal(client, expired)
    hits = len(target.requests_to("/ok"))
    expire_stored_message("dev", expired["messageId"], status="PENDING")
    # When it is dispatched
    outcome = delivery.dispatch(
        delivery.RunInput(MessageKey("dev", expired["messageId"]), 0), delivery.dependencies(get_settings())
    )
    # Then it ends FAILED as expired and the target never sees it again
    assert outcome == delivery.DispatchOutcome.EXPIRED
    record = client.status(expired["messageId"]).body
    assert record["status"] == "FAILED" and "expired" in record["lastError"]
    assert len(target.requests_to("/ok")) == hits
    assert repository.get_head(key) is not None


def test_missing_signing_secret_is_retried_and_delivered_once_restored(
    relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sender whose signing secret is missing from Secrets Manager
    assert relay.local is not None
    sender_id = f"no-secret-{uuid.uuid4().hex[:8]}"
    token = SenderAdmin(relay.local.table_name).create(sender_id)["token"]
    boto3.client("secretsmanager", region_name="us-east-1").delete_secret(
        SecretId=secret_name(sender_id), ForceDeleteWithoutRecovery=True
    )
    # And an operator who restores it as soon as a fast-lane delivery reports it missing
    reported, restored_secret = threading.Event(), threading.Event()
    restored: list[str] = []
    real_deliver = deliver_handler.lambda_handler

    def deliver(event: dict[str, Any], context: Any) -> Any:
        try:
            return real_deliver(event, context)
        except DeliveryRetryable as error:
            if "SigningSecretMissing" in str(error) and not reported.is_set():
                reported.set()
                restored_secret.wait(30)  # the retry comes after the operator acted
            raise

    monkeypatch.setitem(relay.local.overrides, "relay-deliver", deliver)
    client = RelayClient(relay.url, token=token)
    # When a message of that sender is delivered
    message = send_accepted(client, senderId=sender_id, targetUrl=f"{target.url}/ok")
    assert reported.wait(60), "no delivery reported the missing secret"
    restored.append(SigningSecrets().rotate(sender_id))  # the operator, with their own credentials
    restored_secret.set()
    record = wait_until_terminal(client, message)
    # Then the attempts before (the inline one and the fast lane's first) failed retryably with a
    # clear reason, not FAILED for good
    failures = [event for event in record["events"] if event["type"] == "ATTEMPT_FAILED"]
    assert [failure["error"] for failure in failures] == ["SigningSecretMissing"] * (INLINE_ATTEMPTS + 1)
    assert "signing secret was not found" in failures[0]["detail"]
    # And the next attempt delivered it, signed with the restored secret, in one request
    assert (record["status"], record["attempts"]) == ("DELIVERED", INLINE_ATTEMPTS + 2)
    webhook = f"{sender_id}:{message['messageId']}"
    [request] = [r for r in target.requests_to("/ok") if r.header("webhook-id") == webhook]
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert Webhook(restored[0]).verify(request.body, headers) == message["body"]


# -- hostile targets: one deadline per attempt, and a 2xx status line is a delivery -----------------


class HostileTarget:
    """A raw-socket target: reads each request, writes `answer` as is, then trickles `trickle` one
    byte every 50 ms until stopped, and closes. Counts the requests it read."""

    def __init__(self, answer: bytes, trickle: bytes = b"") -> None:
        self.answer, self.trickle = answer, trickle
        self.requests = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), conn, conn.makefile("rb") as reader:
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
            self.requests += 1
            conn.sendall(self.answer)
            while self.trickle and not self.stop.wait(0.05):
                conn.sendall(self.trickle)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def hostile() -> Iterator[Any]:
    started: list[HostileTarget] = []

    def start(answer: bytes, trickle: bytes = b"") -> HostileTarget:
        started.append(HostileTarget(answer, trickle))
        return started[-1]

    yield start
    for target in started:
        target.close()


def delivered_event(record: dict[str, Any]) -> dict[str, Any]:
    return next(event for event in record["events"] if event["type"] == "DELIVERED")


def test_200_with_150_headers_is_delivered_after_one_attempt_and_sent_once(client: RelayClient, hostile: Any) -> None:
    # Given a target that answers 200 with 150 response headers (http.client refuses more than 100)
    headers = b"".join(b"X-H-%d: v\r\n" % number for number in range(150))
    target = hostile(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\n\r\nok")
    # When a message is delivered to it
    record = wait_until_terminal(client, send_accepted(client, targetUrl=target.url))
    # Then it is DELIVERED after one attempt, the target saw one request, and the event says what was wrong
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)
    assert target.requests == 1
    assert delivered_event(record)["anomaly"] == "too many response headers: more than 100"


def test_trickled_connection_close_body_ends_the_attempt_within_the_total_timeout(
    client: RelayClient, hostile: Any
) -> None:
    # Given a target that answers 200 with `Connection: close` and trickles its body forever
    target = hostile(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", trickle=b"a")
    # When a message is delivered to it (total timeout 1 s)
    record = wait_until_terminal(client, send_accepted(client, targetUrl=target.url))
    # Then the attempt is recorded within the total timeout + 1 s, as delivered, once
    event = delivered_event(record)
    assert event["durationMs"] <= 2000
    assert (record["status"], record["attempts"], target.requests) == ("DELIVERED", 1, 1)
    assert "did not arrive within the 1s total timeout" in event["anomaly"]


def test_a_status_code_outside_100_to_599_is_retried_as_a_server_error(client: RelayClient, hostile: Any) -> None:
    # Given a target that answers `HTTP/1.1 999 Weird` (RFC 9110: an invalid code, to be treated as a 5xx)
    target = hostile(b"HTTP/1.1 999 Weird\r\nContent-Length: 5\r\n\r\noops!")
    # When a message with a budget of two attempts is delivered to it
    message = send_accepted(client, targetUrl=target.url, retry={"maxAttempts": 2})
    record = wait_until_terminal(client, message, timeout=60)
    # Then the first answer was retried, not FAILED at once: both attempts were made and recorded
    # with the code the target sent and what is wrong with it
    failures = [event for event in record["events"] if event["type"] == "ATTEMPT_FAILED"]
    assert (record["status"], record["attempts"], target.requests) == ("FAILED", 2, 2)
    assert [(event["error"], event["statusCode"]) for event in failures] == [("HttpStatus", 999)] * 2
    assert all("invalid status code 999" in event["detail"] for event in failures)
    # And it ended FAILED because its budget was spent, not because the code was refused
    assert record["lastError"] == "retry budget of 2 attempts exhausted; last error: HTTP 999"


def test_an_http09_answer_is_retried_with_its_reason(client: RelayClient, hostile: Any) -> None:
    # Given a target that answers with a bare body and no status line
    target = hostile(b"<html>hello</html>")
    # When a message is delivered to it
    record = wait_until_terminal(client, send_accepted(client, targetUrl=target.url), timeout=60)
    # Then every attempt failed with the precise reason, and the message ended FAILED after its retries
    failures = [event for event in record["events"] if event["type"] == "ATTEMPT_FAILED"]
    assert record["status"] == "FAILED"
    assert len(failures) == ALL_ATTEMPTS == target.requests
    assert {event["error"] for event in failures} == {"InvalidResponse"}
    assert all("HTTP/0.9 response" in event["detail"] for event in failures)
