"""The relay table's secondary index names and how many shards each spread index has, defined once:
the data-access layer queries them (functions/adapters/messages/) and the stack creates them and
grants queries on them (stacks/constructs/storage.py). No imports: the stack loads this module too.

How many shards (the one rule for every index key that many writes share):

    shards = ceil(index writes per message x goal messages per second x HEADROOM
                  / PARTITION_WRITES_PER_SECOND)

A DynamoDB partition takes at most 1,000 write units a second, and an index partition key is one
partition however the table scales: every entry under one key value competes for those 1,000
(with a time-ordered sort key the newest entries all land at the end, so DynamoDB cannot split
the hot range). Writes over it are throttled, and an index's throttling holds back the table write
that caused it. Each shard is one value of the key (`<key>#<n>`, n from a hash of the message), so
writes spread evenly over the shards and readers query each shard and merge.

- `bySender` (`spk = SENDER#<sender>#<n>`): one entry per message, put with the head and never
  re-keyed (keys only, so no later update writes it): 1 write per message. Goal 1,000 messages a
  second per sender: 1 x 1,000 x 4 / 1,000 = 4 shards.
- `due` (`dueShard = DUE#<n>`): sparse, nothing on the success path nor for a short delay; a message that goes down the
  whole retry path (inline attempt, fast lane, slow lane, FAILED) changes it 4 times (measured by
  `make bench`'s cost section, `slow_lane`: 4 due write units per message). Goal 1,000 messages a
  second per deployment, all of them failing: 4 x 1,000 x 4 / 1,000 = 16 shards.

- activity (`pk = ACTIVE#<minute>#<n>`, n from a hash of the sender): items of the table itself,
  not an index, under one key per minute, so the same rule holds. About one write per message at
  most: a container's first message of a sender in a minute and its second (none for the rest of
  the minute), and a message the queue holds for a short delay names itself once more, in the item
  of its due minute (in place of a `due` entry): 1 x 1,000 x 4 / 1,000 = 4 shards.

HEADROOM 4 leaves each partition at a quarter of its ceiling at the goal: room for bursts (a batch
of 100 lands at once), for the hash's unevenness, and for twice the goal at half the ceiling.
Shard counts may grow but never shrink: readers query shards 0..count-1, so entries written under
a larger count would be missed.
"""

# Every message once, by sender and acceptance time (`spk`/`ssk`), in SENDER_SHARDS shards.
SENDER_INDEX = "bySender"
# Sparse: FAILED, CANCELLED and PAUSED messages, and the senders' own items (`gsi1pk`/`gsi1sk`).
STATUS_INDEX = "byStatus"
# Sparse: messages the reconciler must look at (`dueShard`/`dueAt`), in DUE_SHARDS shards.
DUE_INDEX = "due"

# -- the sizing rule (above) -------------------------------------------------------------------------

PARTITION_WRITES_PER_SECOND = 1_000
GOAL_MESSAGES_PER_SECOND = 1_000
HEADROOM = 4
SENDER_INDEX_WRITES_PER_MESSAGE = 1
DUE_INDEX_WRITES_PER_MESSAGE = 4
# ceil(a / b) as -(-a // b): integers only, no imports.
SENDER_SHARDS = -(-SENDER_INDEX_WRITES_PER_MESSAGE * GOAL_MESSAGES_PER_SECOND * HEADROOM // PARTITION_WRITES_PER_SECOND)
DUE_SHARDS = -(-DUE_INDEX_WRITES_PER_MESSAGE * GOAL_MESSAGES_PER_SECOND * HEADROOM // PARTITION_WRITES_PER_SECOND)
ACTIVITY_WRITES_PER_MESSAGE = 1
ACTIVITY_SHARDS = -(-ACTIVITY_WRITES_PER_MESSAGE * GOAL_MESSAGES_PER_SECOND * HEADROOM // PARTITION_WRITES_PER_SECOND)
# The scheduler's shards of the `due` index (`SCHED#<n>`): one write when a message due later than
# the queue's delay allows is accepted and one when the dispatcher's claim removes it (the scheduler
# hands it to the queue without a write: its shard's cursor, functions/services/scheduling/
# scheduler.py); 2 x 1,000 x 4 / 1,000 = 8 shards.
SCHEDULER_INDEX_WRITES_PER_MESSAGE = 2
SCHEDULER_SHARDS = -(
    -SCHEDULER_INDEX_WRITES_PER_MESSAGE * GOAL_MESSAGES_PER_SECOND * HEADROOM // PARTITION_WRITES_PER_SECOND
)
