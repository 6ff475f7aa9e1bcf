"""The relay table's secondary index names, defined once: the data-access layer queries them
(functions/adapters/messages/) and the stack creates them and grants queries on them
(stacks/constructs/storage.py). No imports: the stack loads this module too.
"""

# Every message once, by sender and acceptance time (`spk`/`ssk`).
SENDER_INDEX = "bySender"
# Sparse: FAILED, CANCELLED and PAUSED messages, and the senders' own items (`gsi1pk`/`gsi1sk`).
STATUS_INDEX = "byStatus"
# Sparse: messages the reconciler must look at (`dueShard`/`dueAt`).
DUE_INDEX = "due"
