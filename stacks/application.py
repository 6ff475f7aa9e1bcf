"""Builds the CDK app the same way for `cdk synth`, `python app.py` and the tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aws_cdk import App

from stacks.nag import add_checks
from stacks.paths import CDK_JSON, PROJECT_ROOT
from stacks.relay_stack import RelayStack
from stacks.settings import RelaySettings

STACK_ID = "Relay"
STACK_DESCRIPTION = "Relay: an HTTP message relay (accept once, deliver with retries)"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The `context` of cdk.json. The CDK CLI passes it itself; `python app.py` and tests do not."""
    if not path.exists():
        return {}
    context: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")).get("context", {})
    return context


def build_app(
    context: dict[str, Any] | None = None,
    outdir: str | None = None,
    nag: bool = True,
    **stack_options: Any,
) -> tuple[App, RelayStack]:
    """The app with its one stack. Context from the CLI (`-c`) overrides cdk.json and `context`.

    The stack is environment-agnostic (no account or region), so synthesis needs no credentials.
    """
    if outdir is None and "CDK_OUTDIR" not in os.environ:
        outdir = str(PROJECT_ROOT / "cdk.out")
    app = App(context={**cdk_json_context(), **(context or {})}, outdir=outdir)
    stack = RelayStack(
        app,
        STACK_ID,
        settings=RelaySettings.from_context(app.node),
        description=STACK_DESCRIPTION,
        **stack_options,
    )
    if nag:
        add_checks(app)
    return app, stack
