"""The data-access layer over the senders' signing secrets (Secrets Manager).

One `whsec_` secret per sender, read through a Powertools `SecretsProvider` (cached), so a warm
Lambda asks Secrets Manager at most once per `CACHE_SECONDS`. The provider is Relay's own, built on
the shared client of `functions.adapters.aws` and forgotten with it (`aws.on_reset`): a cached value
or client never outlives the AWS it came from. Decisions that create something (get_or_create)
read past the cache, so they never act on a value that only the cache still holds.
"""

from __future__ import annotations

from functools import cache

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError

from functions.adapters import aws
from functions.contract.secret_names import SENDER_SECRET_PREFIX, SIGNING_SECRET_NAME
from functions.domain.exceptions import StorageUnavailable
from functions.domain.web.signing import generate_secret

CACHE_SECONDS = 300


def secret_name(sender_id: str) -> str:
    # Secret names do not allow ':'; '@' is outside the sender alphabet, so the mapping is one-to-one.
    return f"{SENDER_SECRET_PREFIX}{sender_id.replace(':', '@')}/{SIGNING_SECRET_NAME}"


@cache
def _provider() -> SecretsProvider:
    return SecretsProvider(boto3_client=aws.client("secretsmanager"))


aws.on_reset(_provider.cache_clear)


class SigningSecrets:
    def get(self, sender_id: str, fresh: bool = False) -> str | None:
        """The sender's secret, or None when it does not exist (`fresh`: past the cache)."""
        try:
            value = _provider().get(secret_name(sender_id), max_age=CACHE_SECONDS, force_fetch=fresh)
        except GetParameterError as error:
            if "ResourceNotFoundException" in str(error.__cause__ or error):
                return None
            raise StorageUnavailable("Secrets Manager could not be read") from error
        return str(value)

    def create(self, sender_id: str, secret: str | None = None) -> str:
        """Create a sender's secret (or return the existing one when another writer was first)."""
        value = secret or generate_secret()
        try:
            aws.client("secretsmanager").create_secret(
                Name=secret_name(sender_id),
                SecretString=value,
                Description=f"Relay signing secret of sender {sender_id}",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceExistsException":
                existing = self.get(sender_id, fresh=True)
                if existing:
                    return existing
            raise StorageUnavailable("Secrets Manager refused the secret") from error
        except BotoCoreError as error:
            raise StorageUnavailable("Secrets Manager could not be reached") from error
        return value

    def rotate(self, sender_id: str) -> str:
        """A new secret for the sender; also restores one that was deleted (deliveries wait for it)."""
        value = generate_secret()
        try:
            aws.client("secretsmanager").put_secret_value(SecretId=secret_name(sender_id), SecretString=value)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return self.create(sender_id, value)
            raise StorageUnavailable("Secrets Manager refused the new secret") from error
        except BotoCoreError as error:
            raise StorageUnavailable("Secrets Manager refused the new secret") from error
        _provider().clear_cache()
        return value

    def get_or_create(self, sender_id: str) -> str:
        return self.get(sender_id, fresh=True) or self.create(sender_id)
