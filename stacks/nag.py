"""cdk-nag (3.x): the AwsSolutions rule pack and written acknowledgements of its findings.

cdk-nag 3 reports through CDK's policy validation (`Validations`), not through Aspects: findings
fail `app.synth()` and land in `policy-validation-report.json` of the cloud assembly. A finding is
acknowledged on the construct that causes it, always with the reason it is acceptable.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Accept one finding (`AwsSolutions-XX` or `AwsSolutions-XX[Finding]`) on `scope` and below.

    The id is qualified with the plugin's namespace (`AwsSolutions::AwsSolutions-XX`), the form
    the validation report asks for; an unqualified id would be filed under construct annotations.
    """
    if not reason.strip():
        raise ValueError(f"acknowledging {rule_id} needs a reason")
    qualified = rule_id if "::" in rule_id.split("[", 1)[0] else f"{PACK}::{rule_id}"
    Validations.of(scope).acknowledge(Acknowledgment(id=qualified, reason=reason))
