"""Relay's one way to write and read a moment: RFC 3339 in UTC with a `Z`, in milliseconds (or whole
seconds, where a record has always had them).

Stored timestamps sort as strings only if every writer formats them alike, so every module
formats and parses them here.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
