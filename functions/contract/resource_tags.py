"""Tags the stack puts on resources that tools must find from what they already know, defined once.

`relay senders create --table T` must put each new sender's API key in the stack's default usage
plan, knowing only the table: the plan carries the table's name in USAGE_PLAN_TABLE_TAG (the stack
tags it: stacks/relay_stack.py; relay/admin.py finds it; `relay dev` creates its plan with it). No
imports: the stack and the CLI load this module too.
"""

# The default usage plan's tag naming the stack's table (its value: the table's name).
USAGE_PLAN_TABLE_TAG = "relay:table"
