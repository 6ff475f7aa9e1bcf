"""The `relay` command line: run Relay locally and talk to a local or deployed API.

`relay.cli.parser` holds the commands and their flags; each command lives with its kind:
`dev` (relay dev), `messages` (send, status, events/trace, list, replay, cancel), `manage`
(senders, targets) and `demo`; `common` is what they share.
"""

from relay.cli.common import DEFAULT_SENDER
from relay.cli.demo import peak_per_second
from relay.cli.messages import build_message, parse_moment, read_batch
from relay.cli.parser import build_parser, main

__all__ = ["DEFAULT_SENDER", "build_message", "build_parser", "main", "parse_moment", "peak_per_second", "read_batch"]
