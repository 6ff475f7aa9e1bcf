"""The message table and the delivery queue (with its dead-letter queue)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# Index names are shared with the data-access layer (functions/adapters/repository.py explains each one).
from functions.contract.indexes import DUE_INDEX, SENDER_INDEX, STATUS_INDEX
from stacks.settings import RelaySettings

__all__ = ["DUE_INDEX", "SENDER_INDEX", "STATUS_INDEX", "Storage"]

# Key schema (`relay dev` creates the table from the synthesized template).
PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "ttl"

# A delivery message that failed this many receives goes to the dead-letter queue.
MAX_RECEIVE_COUNT = 5


class Storage(Construct):
    """DynamoDB single table (on-demand, TTL, PITR, encrypted) and the SQS delivery queue."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: RelaySettings) -> None:
        super().__init__(scope, construct_id)

        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # KMS with the AWS managed key (aws/dynamodb): encrypted, auditable in CloudTrail, no
            # key to administer or pay for.
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # Messages and their history are the product; deleting the stack keeps them.
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Keys only: an index entry is then written only when its keys change (listings read the
        # messages from the table), which keeps every status update at one write.
        self.table.add_global_secondary_index(
            index_name=STATUS_INDEX,
            partition_key=dynamodb.Attribute(name="gsi1pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="gsi1sk", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        self.table.add_global_secondary_index(
            index_name=SENDER_INDEX,
            partition_key=dynamodb.Attribute(name="spk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="ssk", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        self.table.add_global_secondary_index(
            index_name=DUE_INDEX,
            partition_key=dynamodb.Attribute(name="dueShard", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="dueAt", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )

        self.dead_letter_queue = sqs.Queue(
            self,
            "DeliveryDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        self.queue = sqs.Queue(
            self,
            "DeliveryQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # The dispatcher attempts the messages it receives: the visibility timeout outlasts a
            # whole batch (six times the dispatcher's timeout, as Lambda asks of an SQS consumer).
            visibility_timeout=Duration.seconds(settings.delivery_queue_visibility_seconds),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=self.dead_letter_queue),
        )
