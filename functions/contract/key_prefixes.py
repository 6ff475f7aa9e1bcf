"""The partition key prefixes of the relay table's item kinds, defined once.

The data-access modules build keys with them, and the stack grants each function writes to the
kinds it owns only (an IAM `dynamodb:LeadingKeys` condition): no function can write a sender's
record or a token hash (`relay senders` does, with the operator's credentials). No imports: the
stack loads this module too.
"""

MESSAGE_PREFIX = "MSG#"
TARGET_PREFIX = "TARGET#"
REPLAY_JOB_PREFIX = "REPLAY#"
# Which senders accepted messages in which minute (written once per sender and minute at ingest):
# the reconciler's sweep of never-claimed messages reads these instead of every sender.
ACTIVITY_PREFIX = "ACTIVE#"
