"""Synthesis helper shared by the infrastructure tests (one synthesis per test module)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Synthesized:
    """One synthesis of the app: the template, the validation report and any synth error."""

    outdir: Path
    template: dict[str, Any]
    report: dict[str, Any]
    error: str | None

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template["Resources"]
        return resources

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.resources.items() if value["Type"] == resource_type}


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    """Build and synthesize the app once; cdk-nag findings fail synth, so keep the error to assert on."""
    from stacks.application import build_app

    app, stack = build_app(context=context, outdir=str(outdir))
    error: str | None = None
    try:
        app.synth()
    except RuntimeError as failure:  # jsii surfaces the ValidationFailed error as RuntimeError
        error = str(failure)
    template = json.loads((outdir / stack.template_file).read_text(encoding="utf-8"))
    report_file = outdir / "validation-report.json"
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.exists() else {}
    return Synthesized(outdir=outdir, template=template, report=report, error=error)
