"""The web console's files, as the API function serves them at GET /console and GET /console/{asset}.

Why the API function: the console is a few static files (console/ in the repository, staged beside
`functions/` in the Lambda asset by stacks/bundling.py), so the deployed API serves them with no
other service to run, and `relay dev` serves the very same files through the same function. They
hold no secret and need no authorizer; every data call the page makes goes through the API with
the sender's token, so the console can do nothing a token could not.

Every file is text (HTML, JavaScript modules, CSS, SVG, JSON): the REST API declares no binary media
types, so a proxy integration's text body passes through unchanged. Every answer carries a strict
Content-Security-Policy: scripts and styles from these files only, no inline script or style, no
request to another origin, no framing.

One file is not in the folder: `capabilities.json`, what the API behind this deployment offers
(its statuses, which of them can be replayed or cancelled, the routes of its OpenAPI document),
read from the code and the OpenAPI document staged with it, so the page never repeats a list the
code defines, and shows a section (schedules, notifications) only once the API has its routes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypedDict

from functions.domain.config import SCHEMA_DIR
from functions.domain.model import TERMINAL_STATUSES, Status

# In the repository and in the Lambda asset alike, `console/` sits beside the `functions/` package.
CONSOLE_DIR = Path(__file__).resolve().parents[3] / "console"
OPENAPI_DOCUMENT = SCHEMA_DIR / "openapi.json"
PAGE = "index.html"
CAPABILITIES = "capabilities.json"

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml; charset=utf-8",
    ".json": "application/json; charset=utf-8",
}

# Everything from this origin's console files and API only: no inline script or style, no eval, no
# plugin, no <base> rewriting, no native form submission (a form that posted itself would put its
# fields, the token among them, in a URL), and no page may frame the console.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The console's address (the API's) is not handed to the AWS console pages it links to.
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidate: a deployment's new files are used at once (they are small).
    "Cache-Control": "no-cache",
}


class Capabilities(TypedDict):
    """`capabilities.json`: what the page may offer against this API."""

    statuses: list[str]
    finishedStatuses: list[str]
    replayableStatuses: list[str]
    bulkReplayStatuses: list[str]
    listsEveryStatus: bool
    paths: list[str]  # the OpenAPI document's routes


@dataclass(frozen=True)
class Asset:
    """One file of the console: its text and media type."""

    body: str
    content_type: str

    @property
    def headers(self) -> dict[str, str]:
        return {**SECURITY_HEADERS, "Content-Type": self.content_type}


@lru_cache(maxsize=1)
def _files() -> dict[str, Asset]:
    """The folder's files by name, read once per warm function (only the media types above)."""
    return {
        path.name: Asset(path.read_text(encoding="utf-8"), MEDIA_TYPES[path.suffix])
        for path in sorted(CONSOLE_DIR.iterdir())
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def page() -> Asset:
    return _files()[PAGE]


def asset(name: str) -> Asset | None:
    """The file `name` (a name, never a path: only the folder's own names match), or None."""
    if name == CAPABILITIES:
        return Asset(json.dumps(capabilities(_openapi_document())), MEDIA_TYPES[".json"])
    if name == PAGE:  # the page lives at /console only: its relative links resolve from there
        return None
    return _files().get(name)


@lru_cache(maxsize=1)
def _openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(OPENAPI_DOCUMENT.read_text(encoding="utf-8"))
    return document


def capabilities(openapi: dict[str, Any]) -> Capabilities:
    """What the page may offer against this API (`openapi`: its OpenAPI document)."""
    from functions.adapters.messages.store import REPLAYABLE_STATUSES
    from functions.domain.config import replay_schema

    listing = openapi["paths"]["/messages"]["get"]
    status_parameter = next(p for p in listing.get("parameters", []) if p.get("name") == "status")
    return {
        "statuses": [status.value for status in Status],
        "finishedStatuses": sorted(status.value for status in TERMINAL_STATUSES),
        "replayableStatuses": sorted(status.value for status in REPLAYABLE_STATUSES),
        "bulkReplayStatuses": list(replay_schema()["properties"]["status"]["enum"]),
        # GET /messages without `status` lists every status; an API that needs one is read per status.
        "listsEveryStatus": not status_parameter.get("required", False),
        "paths": sorted(openapi["paths"]),
    }
