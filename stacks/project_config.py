"""Settings a deployment keeps in `cdk.json` (context `relay`), read for `relay dev` too."""

from __future__ import annotations

import json
from typing import Any

from stacks.definitions import DELIVERY_LANES
from stacks.paths import CDK_JSON


def relay_context() -> dict[str, Any]:
    try:
        document = json.loads(CDK_JSON.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    context: dict[str, Any] = document.get("context", {}).get("relay", {})
    return context


def delivery_policy() -> dict[str, Any]:
    """`{"fastLane": {...}, "slowLane": {...}}` overrides of the retry policies in statemachines/."""
    section: dict[str, Any] = relay_context().get("delivery", {})
    # The section also holds `firstAttempt` (stacks/settings.py), which is not a lane.
    return {lane: policy for lane, policy in section.items() if lane in DELIVERY_LANES}


def first_attempt() -> str:
    """`relay.delivery.firstAttempt` (stacks/settings.py validates it): `inline` unless set."""
    from functions.domain.config import FirstAttempt

    return str(relay_context().get("delivery", {}).get("firstAttempt", FirstAttempt.INLINE.value))
