"""The CDK app of Relay: RelayStack (stacks/relay_stack.py) composed of stacks/constructs/*.

Importing this package does not start jsii, so `silence_node_end_of_life_warning()` can run before
`aws_cdk` is imported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

_NODE_EOL_VARIABLE = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"


def silence_node_end_of_life_warning() -> None:
    """Hide jsii's end-of-life banner for the installed Node major version (it must name it)."""
    if _NODE_EOL_VARIABLE in os.environ:
        return
    node = shutil.which("node")
    if node is None:
        return
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return
    match = re.match(r"v(\d+)\.", version.strip())
    if match:
        os.environ[_NODE_EOL_VARIABLE] = match.group(1)
