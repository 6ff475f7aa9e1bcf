"""Sender authentication: a Lambda token authorizer in front of every route of the API.

The authorizer (functions/authorizer) turns `Authorization: Bearer rly_...` into the sender it
belongs to: `$context.authorizer.senderId` for the integrations, and the sender's API key as
`usageIdentifierKey`, so the usage plan throttles each sender on its own (the REST API reads
its keys from the authorizer). API Gateway caches the answer per token.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from constructs import Construct

from stacks.constructs.base.functions import Foundation

AUTHORIZATION_HEADER = "Authorization"
# How long API Gateway reuses an answer for a token. A disabled sender or an expired token can
# keep working for at most this long; every request within it saves an authorizer call.
AUTHORIZER_CACHE_TTL = Duration.seconds(300)


class SenderAuthentication(Construct):
    """The authorizer function (reads token and sender records only) and its TokenAuthorizer."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation) -> None:
        super().__init__(scope, construct_id)
        self.function = foundation.step_function(self, "authorizer", "Relay API: authenticate a sender's bearer token")
        # Token hashes and sender records are single items, read by key.
        self.function.grant([foundation.table.table_arn], "dynamodb:GetItem")

        self.authorizer = apigateway.TokenAuthorizer(
            self,
            "TokenAuthorizer",
            handler=self.function.function,
            identity_source=apigateway.IdentitySource.header(AUTHORIZATION_HEADER),
            results_cache_ttl=AUTHORIZER_CACHE_TTL,
        )
