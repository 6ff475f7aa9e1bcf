"""The key prefixes of the relay table's item kinds, defined once.

The data-access modules build keys with them, and the stack grants each function writes to the
kinds it owns only (an IAM `dynamodb:LeadingKeys` condition): no function can write a sender's
record or a token hash (`relay senders` does, with the operator's credentials). No imports: the
stack loads this module too.
"""

# -- partition keys (`pk`) -------------------------------------------------------------------------

MESSAGE_PREFIX = "MSG#"
TARGET_PREFIX = "TARGET#"
REPLAY_JOB_PREFIX = "REPLAY#"
# A sender's cron schedules: `SCHEDULE#<sender>`, sort key the schedule's name.
SCHEDULE_PREFIX = "SCHEDULE#"
# Which senders accepted messages in which minute, and the ids of the first ones
# (`ACTIVE#<minute>#<shard>`, sort key the sender; written at ingest): the reconciler's sweep of
# never-claimed messages reads these instead of every sender (functions/services/reconciler.py).
ACTIVITY_PREFIX = "ACTIVE#"
# The scheduler's cursor of each of its shards (`CURSOR#<n>`): the time up to which a sweep handed
# every delayed message due there to the queue, so the next sweep skips them without a write per
# message (functions/services/scheduling/scheduler.py).
SCHEDULER_CURSOR_PREFIX = "CURSOR#"
# A sender's record, and a token's hash (only `relay senders` writes them).
SENDER_PREFIX = "SENDER#"
# A sender's operational notifications (PUT /notifications): where its events are delivered.
NOTIFICATION_PREFIX = "NOTIFY#"
TOKEN_PREFIX = "TOKEN#"

# -- sort keys (`sk`) ------------------------------------------------------------------------------

# A message's overflow items: older events moved out of its head (`E#<seq>`, oldest first).
OVERFLOW_SORT_PREFIX = "E#"

# -- index keys ------------------------------------------------------------------------------------

# byStatus (`gsi1pk`): a sender's messages in a sparse status, `SENDER#<sender>#STATUS#<status>`.
STATUS_INFIX = "#STATUS#"
# byStatus: every sender (`relay senders list`), a sender's tokens and a sender's targets.
SENDERS_PARTITION = "SENDERS"
SENDER_TOKENS_PREFIX = "TOKENS#"
SENDER_TARGETS_PREFIX = "TARGETS#"
# byStatus: the targets whose circuit is open, and those that closed with paused messages to resume.
BREAKER_OPEN_PARTITION = "BREAKER#OPEN"
BREAKER_RESUMING_PARTITION = "BREAKER#RESUMING"
# due (`dueShard`): the reconciler's shards, `DUE#<n>`.
DUE_SHARD_PREFIX = "DUE#"
# due (`dueShard`): the scheduler's shards, `SCHED#<n>`: delayed messages not yet queued and schedules.
SCHEDULER_SHARD_PREFIX = "SCHED#"
