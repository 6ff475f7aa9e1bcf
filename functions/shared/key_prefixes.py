"""The partition key prefixes of the relay table's item kinds, defined once.

The data-access modules build keys with them, and the stack grants the internet-facing API
function writes to these kinds only (an IAM `dynamodb:LeadingKeys` condition), so it can never
write a sender's record or token hash. No imports: the stack loads this module too.
"""

MESSAGE_PREFIX = "MSG#"
TARGET_PREFIX = "TARGET#"
REPLAY_JOB_PREFIX = "REPLAY#"
