"""cdk-nag (3.x): the AwsSolutions rule pack and written acknowledgements of its findings.

cdk-nag 3 reports through CDK's policy validation (`Validations`), not through Aspects: findings
fail `app.synth()` and land in `policy-validation-report.json` of the cloud assembly. A finding is
acknowledged on the construct that causes it, always with the reason it is acceptable.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Accept one finding (`RuleId` or `RuleId[Finding]`) on `scope` and its children, with a reason."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule_id} needs a reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule_id, reason=reason))
