"""Infrastructure tests synthesize the real CDK app; jsii must start without the Node EOL banner."""

from stacks import silence_node_end_of_life_warning

silence_node_end_of_life_warning()
