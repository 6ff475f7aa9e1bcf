"""Where the senders' signing secrets live in Secrets Manager, defined once.

functions/adapters/secrets.py names each sender's secret under this prefix; the stack grants the
deliver function reads under it only (stacks/constructs/delivery_workflow.py). No imports: the
stack loads this module too.
"""

# A sender's secret is `relay/senders/<sender>/signing-secret`.
SENDER_SECRET_PREFIX = "relay/senders/"
SIGNING_SECRET_NAME = "signing-secret"
