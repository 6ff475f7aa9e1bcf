#!/usr/bin/env python3
"""CDK entry point: `cdk synth` / `cdk deploy`, or `python app.py` to synthesize into cdk.out/.

Works offline and without credentials once the dependency layer is built (`make install`, or
`python -m stacks.bundling`).
"""

from stacks import silence_node_end_of_life_warning

silence_node_end_of_life_warning()  # before aws_cdk starts jsii

from stacks.application import build_app  # noqa: E402

if __name__ == "__main__":
    app, _ = build_app()
    app.synth()
