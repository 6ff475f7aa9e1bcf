"""Infrastructure tests synthesize the real CDK app; jsii must start without the Node EOL banner."""

import pytest
from infra_support import Synthesized, synthesize

from stacks import silence_node_end_of_life_warning

silence_node_end_of_life_warning()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app exactly as `cdk synth` builds it (cdk.json context, AwsSolutions checks), synthesized
    once per module (a module synthesizing other context defines its own `synth`)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))
