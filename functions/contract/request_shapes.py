"""What an ingest run takes: one message (POST /messages) or a batch (POST /messages/batch), named once.

Both routes run the one ingest definition (statemachines/ingest.asl.json), deployed as one machine
per route; the stack fills its `${RequestShape}` placeholder with the route's shape, the machine
hands it to the validate step, and the steps carry it in their state. This is the only way a batch
is recognised. No imports beyond the standard library: the stack loads this module too.
"""

from enum import StrEnum

# The placeholder of statemachines/ingest.asl.json that the stack fills with a RequestShape.
SHAPE_PLACEHOLDER = "RequestShape"


class RequestShape(StrEnum):
    # The request body is one message; the answer is that message's own answer.
    MESSAGE = "message"
    # The request body is {"messages": [1..100]}; the answer is 200 with one result per message, in order.
    BATCH = "batch"
