"""The data-access layer over Step Functions: starting delivery runs, with traceable names."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.adapters import aws
from functions.domain.exceptions import WorkflowUnavailable
from functions.domain.model import MessageKey

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def execution_name(key: MessageKey, run: int, lane: str, unique: str = "") -> str:
    """A Step Functions execution name a user can find from the message id (1-80 chars, no ':').

    The readable part is cut to fit; the hash of the full key keeps names of long ids distinct.
    """
    digest = hashlib.sha256(key.partition_key.encode()).hexdigest()[:8]
    tail = f"-r{run}-{lane}-{digest}" + (f"-{unique}" if unique else "")
    readable = _NAME_UNSAFE.sub("_", f"{key.message_id}")
    return readable[: 80 - len(tail)] + tail


def standard_execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN a STANDARD machine gives the run of that name (known before the run starts)."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"


class Workflows:
    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
        """Start a run; a STANDARD run of the same name and input is the same run (idempotent)."""
        try:
            response = aws.client("stepfunctions").start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload)
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ExecutionAlreadyExists":
                return standard_execution_arn(state_machine_arn, name)
            raise WorkflowUnavailable(f"Step Functions did not start the run ({code})") from error
        except BotoCoreError as error:
            raise WorkflowUnavailable(f"Step Functions could not be reached ({type(error).__name__})") from error
        return str(response["executionArn"])
