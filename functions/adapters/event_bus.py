"""Operational notifications on an EventBridge bus (source `relay`), so users route them with rules.

The bus is the deployment's own (stacks/constructs/notifications.py); only the functions that
notify may put events on it, and only on it.
"""

from __future__ import annotations

import json
from typing import Any

from functions.adapters import aws

EVENT_SOURCE = "relay"


class EventBus:
    def __init__(self, bus_name: str) -> None:
        self.bus_name = bus_name

    def put(self, detail_type: str, detail: dict[str, Any]) -> None:
        """One event; raises when EventBridge refuses it (the caller's step is retried)."""
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(detail, separators=(",", ":")),
            "EventBusName": self.bus_name,
        }
        answer = aws.client("events").put_events(Entries=[entry])
        if answer.get("FailedEntryCount"):
            code = answer["Entries"][0].get("ErrorCode", "unknown")
            raise RuntimeError(f"EventBridge refused the event ({code})")
