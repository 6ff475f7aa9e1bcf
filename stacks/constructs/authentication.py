"""Sender authentication: a Lambda token authorizer in front of every route of the API.

The authorizer (functions/authorizer) turns `Authorization: Bearer rly_...` into the sender it
belongs to: `$context.authorizer.senderId` for the integrations, and the sender's API key as
`usageIdentifierKey`, so the usage plan throttles each sender on its own (the REST API reads
its keys from the authorizer). API Gateway caches the answer per token.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from functions.contract.settings_names import Setting
from stacks.constructs.functions import FunctionPackage, RelayFunction
from stacks.constructs.workflow import handler_path
from stacks.settings import RelaySettings

AUTHORIZATION_HEADER = "Authorization"
# How long API Gateway reuses an answer for a token. A disabled sender or an expired token can
# keep working for at most this long; every request within it saves an authorizer call.
AUTHORIZER_CACHE_TTL = Duration.seconds(300)


class SenderAuthentication(Construct):
    """The authorizer function (reads token and sender records only) and its TokenAuthorizer."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: FunctionPackage,
        table: dynamodb.ITable,
        settings: RelaySettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = RelayFunction(
            self,
            "Authorizer",
            package=package,
            handler=handler_path("authorizer"),
            description="Relay API: authenticate a sender's bearer token",
            environment={Setting.TABLE_NAME: table.table_name, **settings.function_environment()},
        )
        # Token hashes and sender records are single items, read by key.
        self.function.grant([table.table_arn], "dynamodb:GetItem")

        self.authorizer = apigateway.TokenAuthorizer(
            self,
            "TokenAuthorizer",
            handler=self.function.function,
            identity_source=apigateway.IdentitySource.header(AUTHORIZATION_HEADER),
            results_cache_ttl=AUTHORIZER_CACHE_TTL,
        )
