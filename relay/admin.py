"""Sender administration: `relay senders ...` against a deployment, and `relay dev`'s admin routes.

Creating a sender makes its record, a first API token (shown once), its signing secret and an API
Gateway key in a usage plan: every method of the API requires a key (the authorizer hands API
Gateway the sender's), so a sender without one would get 403 on every call. The plan is the one
named, or the stack's default plan, found by its tag naming the table; with none, creation fails
before anything is written, and a step that fails later undoes the earlier ones. The plan is also
how API Gateway throttles each sender on its own (429). `relay dev` creates the same tagged plan
on its embedded AWS, so the same code runs there with no flags.

Every input is checked against `schemas/admin.schema.json` before anything is written, as
messages are: sender ids in the message id alphabet (a `#` would forge another key of the
single table), numbers typed and bounded (a rate of "fast" or a grace of 1e300 hours would break
the throttle or the token expiry later); each refusal names its field.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from jsonschema import Draft202012Validator

from functions.adapters import aws
from functions.adapters.secrets import SigningSecrets
from functions.adapters.stores.senders import ACTIVE, DISABLED, SenderRepository, rotation_deadline
from functions.contract.resource_tags import USAGE_PLAN_TABLE_TAG
from functions.domain.config import SCHEMA_DIR, message_schema
from functions.domain.exceptions import FieldError, MessageInvalid, RelayError, SenderExists, SenderUnknown
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


# API Gateway's ceilings on keys, which are one per sender (README, "Senders, tokens and isolation").
API_KEYS_PER_REGION = 10_000
API_KEYS_CREATED_PER_SECOND = 5
_KEY_REFUSALS = {
    "LimitExceededException": f"API Gateway's quota is reached: {API_KEYS_PER_REGION:,} API keys per account and "
    "region (one per sender; it cannot be raised) or, for a sender with its own --rate/--burst, usage plans per "
    "account and region (one per such sender): remove unused senders' keys and plans, or deploy another Relay in "
    "another region or account (README: Senders past 10,000)",
    "TooManyRequestsException": f"API Gateway creates at most {API_KEYS_CREATED_PER_SECOND} API keys a second "
    "per account; try again in a moment",
    "NotFoundException": "the usage plan does not exist (any more)",
}


class SenderNotCreated(RelayError):
    """The sender could not get a working API key in a usage plan; nothing of it was kept."""


Undo = Callable[[], object]


@dataclass
class SenderAdmin:
    table_name: str
    # The usage plan new senders' keys join; None: the stack's default plan, found by its tag
    # naming the table (functions/contract/resource_tags.py).
    usage_plan_id: str | None = None

    @property
    def senders(self) -> SenderRepository:
        return SenderRepository(self.table_name)

    def create(self, sender_id: str, rate_per_second: float | None = None, burst: int | None = None) -> dict[str, Any]:
        """A sender with a first token, its signing secret and an API key in a usage plan (every API
        method requires one): all of it, or, when a step fails, none of it (SenderNotCreated)."""
        limits = {
            key: value for key, value in (("ratePerSecond", rate_per_second), ("burst", burst)) if value is not None
        }
        check_admin_input(CREATE_SENDER, {"senderId": sender_id, **limits})
        if self.senders.get(sender_id) is not None:
            raise SenderExists(f"sender '{sender_id}' exists already")
        plan_id = self.default_plan()  # before anything is written
        undo: list[Undo] = []
        try:
            # The key first: a sender record never exists without the key API Gateway will ask for.
            api_key = self._create_api_key(sender_id, limits, plan_id, undo)
            self.senders.create(sender_id, limits or None, extra=api_key)
            undo.append(lambda: self.senders.delete(sender_id))
            token = self.senders.add_token(sender_id)
            undo.append(lambda: self.senders.delete_token(token))
            secret = SigningSecrets().get_or_create(sender_id)
        except Exception as error:
            left = _undo(undo)
            if isinstance(error, SenderExists) and not left:
                raise
            raise SenderNotCreated(_not_created(sender_id, error, left)) from error
        return {"senderId": sender_id, "status": ACTIVE, "token": token, "signingSecret": secret, "limits": limits}

    def default_plan(self) -> str:
        """The usage plan new senders' keys join: the one named, checked, or the one tagged with this
        table. SenderNotCreated when there is none (or, tagged, more than one)."""
        apigateway = aws.client("apigateway")
        if self.usage_plan_id:
            try:
                apigateway.get_usage_plan(usagePlanId=self.usage_plan_id)
            except ClientError as error:
                reason = _KEY_REFUSALS.get(_code(error), f"API Gateway refused to read it ({_code(error)})")
                raise SenderNotCreated(f"usage plan '{self.usage_plan_id}': {reason}") from None
            return self.usage_plan_id
        try:
            plans = [
                plan["id"]
                for page in apigateway.get_paginator("get_usage_plans").paginate()
                for plan in page.get("items", [])
                if (plan.get("tags") or {}).get(USAGE_PLAN_TABLE_TAG) == self.table_name
            ]
        except (ClientError, BotoCoreError) as error:
            raise SenderNotCreated(f"could not list API Gateway's usage plans ({_code(error)})") from None
        if len(plans) != 1:
            found = "no usage plan" if not plans else f"{len(plans)} usage plans"
            raise SenderNotCreated(
                f"{found} tagged {USAGE_PLAN_TABLE_TAG}={self.table_name}: every API method needs a key in the "
                "stack's plan; give --stack NAME, or --usage-plan-id (the stack's UsagePlanId output)"
            )
        self.usage_plan_id = plans[0]
        return self.usage_plan_id

    def _create_api_key(self, sender_id: str, limits: dict[str, Any], plan_id: str, undo: list[Undo]) -> dict[str, str]:
        apigateway = aws.client("apigateway")
        value = secrets.token_urlsafe(30)
        key = apigateway.create_api_key(name=f"relay-sender-{sender_id}", enabled=True, value=value)
        undo.append(lambda: apigateway.delete_api_key(apiKey=key["id"]))
        if limits:
            # A sender with its own limits gets its own plan on the same API stages.
            base = apigateway.get_usage_plan(usagePlanId=plan_id)
            plan = apigateway.create_usage_plan(
                name=f"relay-sender-{sender_id}",
                apiStages=base.get("apiStages", []),
                throttle={
                    "rateLimit": float(limits.get("ratePerSecond", base.get("throttle", {}).get("rateLimit", 10))),
                    "burstLimit": int(limits.get("burst", base.get("throttle", {}).get("burstLimit", 20))),
                },
            )
            plan_id = plan["id"]
            undo.append(lambda: _delete_plan(apigateway, plan["id"], plan.get("apiStages", [])))
        apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
        undo.append(lambda: apigateway.delete_usage_plan_key(usagePlanId=plan_id, keyId=key["id"]))
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


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) or type(error).__name__
    return type(error).__name__


def _undo(steps: list[Undo]) -> list[str]:
    """Undo a creation's steps, the last first; what could not be undone (to tell the operator)."""
    left = []
    for step in reversed(steps):
        try:
            step()
        except Exception as error:
            left.append(_code(error))
    return left


def _not_created(sender_id: str, error: Exception, left: list[str]) -> str:
    reason = _KEY_REFUSALS.get(_code(error)) if isinstance(error, ClientError) else None
    message = f"sender '{sender_id}' was not created: {reason or str(error) or _code(error)}"
    if left:
        message += f" (and {len(left)} of its parts could not be removed: {', '.join(left)}; see relay senders list)"
    return message


def _delete_plan(apigateway: Any, plan_id: str, stages: list[dict[str, Any]]) -> None:
    """Delete a sender's own usage plan (API Gateway deletes a plan only once it has no stages)."""
    if stages:
        operations = [{"op": "remove", "path": "/apiStages", "value": f"{s['apiId']}:{s['stage']}"} for s in stages]
        apigateway.update_usage_plan(usagePlanId=plan_id, patchOperations=operations)
    apigateway.delete_usage_plan(usagePlanId=plan_id)
