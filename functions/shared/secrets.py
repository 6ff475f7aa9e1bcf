"""The data-access layer over the senders' signing secrets (Secrets Manager).

One `whsec_` secret per sender, read through Powertools' cached `get_secret`, so a warm Lambda
asks Secrets Manager at most once per `max_age` seconds.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError

from functions.shared import aws
from functions.shared.exceptions import StorageUnavailable
from functions.shared.signing import generate_secret

SECRET_PREFIX = "relay/senders/"
CACHE_SECONDS = 300


def secret_name(sender_id: str) -> str:
    # Secret names do not allow ':'; '@' is outside the sender alphabet, so the mapping is one-to-one.
    return f"{SECRET_PREFIX}{sender_id.replace(':', '@')}/signing-secret"


class SigningSecrets:
    def get(self, sender_id: str) -> str | None:
        try:
            value = parameters.get_secret(secret_name(sender_id), max_age=CACHE_SECONDS)
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
                existing = self.get(sender_id)
                if existing:
                    return existing
            raise StorageUnavailable("Secrets Manager refused the secret") from error
        except BotoCoreError as error:
            raise StorageUnavailable("Secrets Manager could not be reached") from error
        return value

    def rotate(self, sender_id: str) -> str:
        value = generate_secret()
        try:
            aws.client("secretsmanager").put_secret_value(SecretId=secret_name(sender_id), SecretString=value)
        except (ClientError, BotoCoreError) as error:
            raise StorageUnavailable("Secrets Manager refused the new secret") from error
        parameters.clear_caches()
        return value

    def get_or_create(self, sender_id: str) -> str:
        return self.get(sender_id) or self.create(sender_id)
