"""Deployment settings: the `relay` object of the CDK context (cdk.json or `-c relay=...`).

Message limits default to `x-relay-limits` in schemas/message.schema.json, the same defaults the
functions use when an environment variable is absent (functions/shared/config.py), so the schema
stays the single source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from constructs import Node

from functions.shared.config import message_schema
from functions.shared.validation import ENVELOPE_ALLOWANCE_BYTES

CONTEXT_KEY = "relay"

# Objects inside the `relay` context that other capabilities read themselves (the delivery retry
# policies: relay/project_config.delivery_policy); kept as they are, in `RelaySettings.sections`.
SECTIONS = frozenset({"delivery"})

# functions/shared/config.py uses the same default when RELAY_REDRIVE_AFTER_SECONDS is absent.
DEFAULT_REDRIVE_AFTER_SECONDS = 300

# Step Functions refuses execution inputs over 256 KiB. The API forwards the request base64-encoded
# (4/3 of its size) and cuts it just over the largest request validate accepts, which is
# ENVELOPE_ALLOWANCE_BYTES more than the body limit (see forwarded_base64_chars).
STEP_FUNCTIONS_PAYLOAD_LIMIT = 256 * 1024
INPUT_OVERHEAD_BYTES = 1024  # requestId, senderId and the JSON around them


def forwarded_base64_chars(max_request_bytes: int) -> int:
    """Length of the base64 text of the smallest request over `max_request_bytes` (a multiple of 4).

    The API forwards at most this much, so an oversized request still reaches validate (which then
    answers 413) and the execution input stays under Step Functions' limit.
    """
    return 4 * -(-(max_request_bytes + 1) // 3)


# The largest maxBodyBytes whose forwarded request still fits an execution input.
MAX_BODY_BYTES_LIMIT = (STEP_FUNCTIONS_PAYLOAD_LIMIT - INPUT_OVERHEAD_BYTES) // 4 * 3 - 1 - ENVELOPE_ALLOWANCE_BYTES


class SettingsError(ValueError):
    """The `relay` context is not valid."""


@dataclass(frozen=True)
class RelaySettings:
    """Every knob of a deployment, with its cdk.json name in `CONTEXT_NAMES`."""

    ttl_days: int
    max_body_bytes: int
    max_header_count: int
    max_header_bytes: int
    max_future_skew_seconds: int
    redrive_after_seconds: int = DEFAULT_REDRIVE_AFTER_SECONDS
    # Stage-wide API Gateway throttling (requests per second, and burst).
    api_throttling_rate_limit: int = 100
    api_throttling_burst_limit: int = 200
    # The SECTIONS present in the context, unvalidated here.
    sections: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def defaults(cls) -> RelaySettings:
        limits = message_schema()["x-relay-limits"]
        return cls(
            ttl_days=int(limits["ttlDays"]),
            max_body_bytes=int(limits["maxBodyBytes"]),
            max_header_count=int(limits["maxHeaderCount"]),
            max_header_bytes=int(limits["maxHeaderBytes"]),
            max_future_skew_seconds=int(limits["maxFutureSkewSeconds"]),
        )

    @classmethod
    def from_context(cls, node: Node) -> RelaySettings:
        return cls.from_mapping(node.try_get_context(CONTEXT_KEY))

    @classmethod
    def from_mapping(cls, raw: Any) -> RelaySettings:
        """Defaults overridden by `raw` (a mapping, or its JSON text as `-c relay=...` gives it)."""
        if raw is None:
            raw = {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as error:
                raise SettingsError(f"context '{CONTEXT_KEY}' is not a JSON object: {error}") from None
        if not isinstance(raw, dict):
            raise SettingsError(f"context '{CONTEXT_KEY}' must be an object, got {type(raw).__name__}")
        known = set(CONTEXT_NAMES.values()) | SECTIONS
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(
                f"unknown setting(s) in context '{CONTEXT_KEY}': {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {name: getattr(cls.defaults(), name) for name in CONTEXT_NAMES}
        for name, context_name in CONTEXT_NAMES.items():
            if context_name in raw:
                values[name] = _positive_int(context_name, raw[context_name])
        sections = {name: raw[name] for name in SECTIONS if name in raw}
        for name, section in sections.items():
            if not isinstance(section, dict):
                raise SettingsError(f"{CONTEXT_KEY}.{name} must be an object")
        settings = cls(**values, sections=sections)
        settings.check()
        return settings

    def check(self) -> None:
        if self.max_body_bytes > MAX_BODY_BYTES_LIMIT:
            raise SettingsError(
                f"{CONTEXT_KEY}.maxBodyBytes is {self.max_body_bytes}; at most {MAX_BODY_BYTES_LIMIT} fits "
                "a Step Functions execution input (256 KiB) once the request is base64-encoded"
            )
        if self.api_throttling_burst_limit < self.api_throttling_rate_limit:
            raise SettingsError(f"{CONTEXT_KEY}.apiThrottlingBurstLimit must be at least apiThrottlingRateLimit")

    def function_environment(self) -> dict[str, str]:
        """The variables functions/shared/config.py reads (table and queue are added per function)."""
        return {
            "RELAY_TTL_DAYS": str(self.ttl_days),
            "RELAY_MAX_BODY_BYTES": str(self.max_body_bytes),
            "RELAY_MAX_HEADER_COUNT": str(self.max_header_count),
            "RELAY_MAX_HEADER_BYTES": str(self.max_header_bytes),
            "RELAY_MAX_FUTURE_SKEW_SECONDS": str(self.max_future_skew_seconds),
            "RELAY_REDRIVE_AFTER_SECONDS": str(self.redrive_after_seconds),
        }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# Python field name -> cdk.json key (ttl_days -> ttlDays, the spelling of x-relay-limits).
CONTEXT_NAMES: dict[str, str] = {
    setting.name: _camel(setting.name) for setting in fields(RelaySettings) if setting.name != "sections"
}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be a positive integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be a positive integer, got {value!r}") from None
    if number <= 0:
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be a positive integer, got {value!r}")
    return number
