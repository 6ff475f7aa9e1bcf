"""Sender administration: `relay senders ...` against a deployment, and `relay dev`'s admin routes.

Creating a sender makes its record, a first API token (shown once) and its signing secret; on a
deployment it also gives the sender an API Gateway key in the stack's usage plan, which is how
API Gateway throttles each sender on its own (429).

Every input is checked against `schemas/admin.schema.json` before anything is written, as
messages are: sender ids in the message id alphabet (a `#` would forge another key of the
single table), numbers typed and bounded (a rate of "fast" or a grace of 1e300 hours would break
the throttle or the token expiry later); each refusal names its field.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from functions.adapters import aws
from functions.adapters.secrets import SigningSecrets
from functions.adapters.senders import ACTIVE, DISABLED, SenderRepository, rotation_deadline
from functions.domain.config import SCHEMA_DIR, message_schema
from functions.domain.exceptions import FieldError, MessageInvalid, SenderExists, SenderUnknown
from functions.domain.validation import _MessageValidator, _schema_errors

ADMIN_SCHEMA_PATH = SCHEMA_DIR / "admin.schema.json"
# The kinds of admin input (the `$defs` of schemas/admin.schema.json).
CREATE_SENDER, ROTATE_TOKEN, SENDER_ACTION, SENDER_PATH = "createSender", "rotateToken", "senderAction", "senderPath"


class AdminInputInvalid(MessageInvalid):
    """An admin request breaks schemas/admin.schema.json; `details` names every field."""


@lru_cache(maxsize=8)
def _validator(kind: str) -> Any:
    schema = json.loads(ADMIN_SCHEMA_PATH.read_text(encoding="utf-8"))
    schema["$defs"]["identifier"] = message_schema()["$defs"]["identifier"]
    validator = _MessageValidator({**schema, "$ref": f"#/$defs/{kind}"})  # ECMA patterns, as messages
    Draft202012Validator.check_schema(validator.schema)
    return validator


def check_admin_input(kind: str, document: Any) -> None:
    """Raise AdminInputInvalid naming every field of `document` that breaks the schema's `kind`."""
    errors = list(_validator(kind).iter_errors(document))
    if not errors:
        return
    details = _schema_errors(errors)
    if not isinstance(document, dict):
        details = [FieldError("$", "the request body must be a JSON object")]
    raise AdminInputInvalid(details, "The admin request is invalid.")


def _sender_input(sender_id: Any) -> None:
    check_admin_input(SENDER_PATH, {"senderId": sender_id})


@dataclass
class SenderAdmin:
    table_name: str
    usage_plan_id: str | None = None

    @property
    def senders(self) -> SenderRepository:
        return SenderRepository(self.table_name)

    def create(self, sender_id: str, rate_per_second: float | None = None, burst: int | None = None) -> dict[str, Any]:
        limits = {
            key: value for key, value in (("ratePerSecond", rate_per_second), ("burst", burst)) if value is not None
        }
        check_admin_input(CREATE_SENDER, {"senderId": sender_id, **limits})
        if self.senders.get(sender_id) is not None:
            raise SenderExists(f"sender '{sender_id}' exists already")
        # The key first: a sender record never exists without the key API Gateway will ask for.
        api_key = self._create_api_key(sender_id, limits) if self.usage_plan_id else {}
        self.senders.create(sender_id, limits or None, extra=api_key)
        token = self.senders.add_token(sender_id)
        secret = SigningSecrets().get_or_create(sender_id)
        return {"senderId": sender_id, "status": ACTIVE, "token": token, "signingSecret": secret, "limits": limits}

    def _create_api_key(self, sender_id: str, limits: dict[str, Any]) -> dict[str, str]:
        apigateway = aws.client("apigateway")
        value = secrets.token_urlsafe(30)
        key = apigateway.create_api_key(name=f"relay-sender-{sender_id}", enabled=True, value=value)
        plan_id = self.usage_plan_id
        if limits:
            # A sender with its own limits gets its own plan on the same API stages.
            base = apigateway.get_usage_plan(usagePlanId=self.usage_plan_id)
            plan = apigateway.create_usage_plan(
                name=f"relay-sender-{sender_id}",
                apiStages=base.get("apiStages", []),
                throttle={
                    "rateLimit": float(limits.get("ratePerSecond", base.get("throttle", {}).get("rateLimit", 10))),
                    "burstLimit": int(limits.get("burst", base.get("throttle", {}).get("burstLimit", 20))),
                },
            )
            plan_id = plan["id"]
        apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
        return {"apiKey": value, "apiKeyId": key["id"]}

    def list(self) -> list[dict[str, Any]]:
        result = []
        for sender in self.senders.list_all():
            tokens = self.senders.tokens(sender["senderId"])
            result.append(
                {
                    "senderId": sender["senderId"],
                    "status": sender.get("status"),
                    "createdAt": sender.get("createdAt"),
                    "limits": sender.get("limits", {}),
                    "tokens": [
                        {key: token[key] for key in ("hint", "createdAt", "expiresAt") if key in token}
                        for token in tokens
                    ],
                }
            )
        return result

    def _require(self, sender_id: str) -> dict[str, Any]:
        _sender_input(sender_id)
        sender = self.senders.get(sender_id)
        if sender is None:
            raise SenderUnknown(f"no sender '{sender_id}'")
        return sender

    def rotate_token(self, sender_id: str, grace_hours: float = 24.0) -> dict[str, Any]:
        """A new token now; the old ones keep working for `grace_hours`, then stop."""
        check_admin_input(ROTATE_TOKEN, {"graceHours": grace_hours})
        self._require(sender_id)
        token = self.senders.add_token(sender_id)
        deadline = rotation_deadline(grace_hours)
        expired = self.senders.expire_tokens(sender_id, deadline, keep=token)
        return {
            "senderId": sender_id,
            "token": token,
            "oldTokensExpireAt": deadline.isoformat(timespec="seconds"),
            "oldTokens": expired,
        }

    def rotate_secret(self, sender_id: str) -> dict[str, Any]:
        self._require(sender_id)
        return {"senderId": sender_id, "signingSecret": SigningSecrets().rotate(sender_id)}

    def set_status(self, sender_id: str, enabled: bool) -> dict[str, Any]:
        _sender_input(sender_id)
        self.senders.set_status(sender_id, ACTIVE if enabled else DISABLED)
        sender = self._require(sender_id)
        if sender.get("apiKeyId"):
            aws.client("apigateway").update_api_key(
                apiKey=sender["apiKeyId"],
                patchOperations=[{"op": "replace", "path": "/enabled", "value": "true" if enabled else "false"}],
            )
        return {"senderId": sender_id, "status": ACTIVE if enabled else DISABLED}
