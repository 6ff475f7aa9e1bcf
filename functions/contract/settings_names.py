"""The names of Relay's environment variables (`RELAY_*`), each written once.

The functions read `Setting`s (functions/domain/config.py, functions/services/replays.py); the stack
sets them (stacks/settings.py, stacks/constructs/*.py), and `relay dev` sets them for the functions
it runs (relay/local/). `ToolVariable`s are read by the `relay` CLI from the operator's shell. No
imports: the stack and the CLI load this module without the Lambda runtime's dependencies.
"""

from enum import StrEnum

# Every variable of Relay's starts with this (`relay dev --set RELAY_NAME=VALUE` checks it).
PREFIX = "RELAY_"


class Setting(StrEnum):
    """A function's setting, as the stack (or `relay dev`) puts it in the function's environment."""

    # Where the data lives and where work is queued (set per function by stacks/constructs/).
    TABLE_NAME = "RELAY_TABLE_NAME"
    QUEUE_URL = "RELAY_QUEUE_URL"
    FAILED_QUEUE_URL = "RELAY_FAILED_QUEUE_URL"
    # The delivery queue's dead-letter queue: the reconciler takes back what lands there.
    DEAD_LETTER_QUEUE_URL = "RELAY_DEAD_LETTER_QUEUE_URL"
    # The EventBridge bus operational notifications are also put on (source `relay`); empty: none.
    EVENT_BUS_NAME = "RELAY_EVENT_BUS_NAME"
    FAST_LANE_ARN = "RELAY_FAST_LANE_ARN"
    SLOW_LANE_ARN = "RELAY_SLOW_LANE_ARN"
    # The bulk replay job's state machine (the API function starts it: stacks/constructs/replay.py).
    REPLAY_MACHINE_ARN = "RELAY_REPLAY_MACHINE_ARN"
    # Message limits (`x-relay-limits` in schemas/message.schema.json unless cdk.json says otherwise).
    TTL_DAYS = "RELAY_TTL_DAYS"
    MAX_BODY_BYTES = "RELAY_MAX_BODY_BYTES"
    MAX_HEADER_COUNT = "RELAY_MAX_HEADER_COUNT"
    MAX_HEADER_BYTES = "RELAY_MAX_HEADER_BYTES"
    MAX_FUTURE_SKEW_SECONDS = "RELAY_MAX_FUTURE_SKEW_SECONDS"
    ALLOW_PRIVATE_TARGETS = "RELAY_ALLOW_PRIVATE_TARGETS"
    REQUIRE_SENDER = "RELAY_REQUIRE_SENDER"
    REDRIVE_AFTER_SECONDS = "RELAY_REDRIVE_AFTER_SECONDS"
    # One delivery attempt.
    CONNECT_TIMEOUT_SECONDS = "RELAY_CONNECT_TIMEOUT_SECONDS"
    TOTAL_TIMEOUT_SECONDS = "RELAY_TOTAL_TIMEOUT_SECONDS"
    MAX_RESPONSE_BYTES = "RELAY_MAX_RESPONSE_BYTES"
    FAST_LANE_LEASE_SECONDS = "RELAY_FAST_LANE_LEASE_SECONDS"
    SLOW_LANE_LEASE_SECONDS = "RELAY_SLOW_LANE_LEASE_SECONDS"
    # `relay.delivery.firstAttempt` (the dispatcher's FirstAttempt).
    FIRST_ATTEMPT = "RELAY_FIRST_ATTEMPT"
    MAX_RETRY_AFTER_SECONDS = "RELAY_MAX_RETRY_AFTER_SECONDS"
    # The retry schedule as the attempting functions see it (stacks/schedule.py writes it).
    MAX_ATTEMPTS = "RELAY_MAX_ATTEMPTS"
    FAST_LANE_WAITS = "RELAY_FAST_LANE_WAITS"
    SLOW_LANE_WAITS = "RELAY_SLOW_LANE_WAITS"
    SLOW_LANE_INITIAL_WAIT_SECONDS = "RELAY_SLOW_LANE_INITIAL_WAIT_SECONDS"
    # `relay.targets.defaultRatePerSecond` / `defaultMaxConcurrency` (absent = unlimited).
    TARGET_DEFAULT_RATE_PER_SECOND = "RELAY_TARGET_DEFAULT_RATE_PER_SECOND"
    TARGET_DEFAULT_MAX_CONCURRENCY = "RELAY_TARGET_DEFAULT_MAX_CONCURRENCY"
    # `relay.circuitBreaker`.
    BREAKER_FAILURE_THRESHOLD = "RELAY_BREAKER_FAILURE_THRESHOLD"
    BREAKER_PROBE_AFTER_SECONDS = "RELAY_BREAKER_PROBE_AFTER_SECONDS"
    BREAKER_MAX_PROBE_AFTER_SECONDS = "RELAY_BREAKER_MAX_PROBE_AFTER_SECONDS"
    # The bulk replay job's paging (functions/services/replays.py; tests shrink them).
    REPLAY_PAGE_SIZE = "RELAY_REPLAY_PAGE_SIZE"
    REPLAY_PAGES_PER_RUN = "RELAY_REPLAY_PAGES_PER_RUN"


class ToolVariable(StrEnum):
    """What the `relay` CLI reads from the operator's shell (relay/cli.py, relay/client.py)."""

    # Where `relay` keeps its credentials (default ~/.relay).
    HOME = "RELAY_HOME"
    URL = "RELAY_URL"
    TOKEN = "RELAY_TOKEN"
    SENDER_ID = "RELAY_SENDER_ID"
    ADMIN_TOKEN = "RELAY_ADMIN_TOKEN"
