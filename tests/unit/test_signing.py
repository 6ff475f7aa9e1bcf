"""Standard Webhooks signing, checked against the `standardwebhooks` reference verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from functions.domain.web.signing import generate_secret, sign, signature_headers

WEBHOOK_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def test_generate_secret_is_whsec_and_32_random_bytes() -> None:
    # Given / When two secrets are generated
    first, second = generate_secret(), generate_secret()

    # Then each is "whsec_" + base64 of 32 bytes, and they differ
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert first != second


@pytest.mark.parametrize(
    "body",
    [
        b'{"event":"order.created","id":42}',
        '{"name":"Zoë","city":"Kraków","note":"✓ 日本"}'.encode(),
        b"",
    ],
    ids=["ascii-json", "non-ascii-utf8", "empty"],
)
def test_reference_verifier_accepts_our_signature(body: bytes) -> None:
    # Given a fresh secret and a current timestamp
    secret = generate_secret()
    timestamp = int(time.time())

    # When the headers are computed
    headers = signature_headers(secret, WEBHOOK_ID, timestamp, body)

    # Then the standardwebhooks package (not written here) verifies them
    Webhook(secret).verify(body, headers, json_parse=False)
    assert headers["webhook-id"] == WEBHOOK_ID
    assert headers["webhook-timestamp"] == str(timestamp)
    assert headers["webhook-signature"].startswith("v1,")


def test_reference_verifier_rejects_a_tampered_body() -> None:
    # Given a signed body
    secret = generate_secret()
    body = '{"amount":"100.00 €"}'.encode()
    headers = signature_headers(secret, WEBHOOK_ID, int(time.time()), body)

    # When one byte of the body changes, Then verification fails
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"100", b"900"), headers, json_parse=False)


def test_reference_verifier_rejects_another_secret_or_id() -> None:
    # Given a signature made with one secret
    secret, other = generate_secret(), generate_secret()
    body = b'{"ok":true}'
    headers = signature_headers(secret, WEBHOOK_ID, int(time.time()), body)

    # When it is checked with another secret, or the id is swapped, Then it fails
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_other"}, json_parse=False)


def test_signature_matches_the_published_formula() -> None:
    # Given a known key, id, timestamp and body
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = b"\x00\xffraw bytes \xc3\xa9"

    # When signed
    signature = sign(secret, "msg_1", 1_700_000_000, body)

    # Then it is v1, + base64(HMAC-SHA256(key, b"msg_1.1700000000." + body)) over the raw bytes
    expected = hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert signature == "v1," + base64.b64encode(expected).decode()


@pytest.mark.parametrize("secret", ["no-prefix", "whsec_", "whsec_not base64!"])
def test_malformed_secret_is_refused(secret: str) -> None:
    # Given a malformed secret, When signing, Then a ValueError names the problem (not the secret)
    with pytest.raises(ValueError, match="secret") as raised:
        sign(secret, WEBHOOK_ID, 0, b"")
    assert "not base64!" not in str(raised.value)
