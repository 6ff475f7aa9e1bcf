"""Step Functions executions on the embedded AWS (moto's Step Functions parser): run one to its end
as StartSyncExecution answers, or stop one as its process ending would.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from typing import Any

from relay.local.template import ACCOUNT_ID, REGION


def stop_execution(execution: Any, error: str = "LocalAwsStopped", cause: str = "the embedded AWS stopped") -> bool:
    """Stop a running execution as its process ending would; False when it had ended first.

    A run that has just started has no evaluation environment yet (moto then fails to stop it), so
    this tries again for a moment.
    """
    deadline = time.monotonic() + 5
    while str(getattr(execution.exec_status, "value", "")) == "RUNNING":
        try:
            execution.stop(stop_date=datetime.datetime.now(tz=datetime.UTC), error=error, cause=cause)
            return True
        except AttributeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    return False


def stepfunctions_backend() -> Any:
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    return stepfunctions_parser_backends[ACCOUNT_ID][REGION]


def run_sync_execution(
    state_machine_arn: str, execution_input: dict[str, Any], name: str | None = None
) -> dict[str, Any]:
    """Run one execution to its end in this thread and answer like StartSyncExecution."""
    from moto.stepfunctions.parser.backend.execution import SyncExecution
    from moto.stepfunctions.parser.utils import TMP_THREADS

    backend = stepfunctions_backend()
    state_machine = backend.describe_state_machine(state_machine_arn)
    name = name or str(uuid.uuid4())
    execution = SyncExecution(
        name=name,
        sm_type=state_machine.sm_type,
        role_arn=state_machine.roleArn,
        exec_arn=f"arn:aws:states:{REGION}:{ACCOUNT_ID}:express:{state_machine.name}:{name}:{uuid.uuid4()}",
        account_id=ACCOUNT_ID,
        region_name=REGION,
        state_machine=state_machine,
        start_date=datetime.datetime.now(tz=datetime.UTC),
        cloud_watch_logging_session=None,
        input_data=json.dumps(execution_input),
        trace_header=None,
        activity_store={},
    )
    execution.start()
    # moto keeps every worker thread in a module list; a long-running dev server must not.
    TMP_THREADS[:] = [thread for thread in TMP_THREADS if thread.is_alive()]
    output: dict[str, Any] = dict(execution.to_start_sync_execution_output())
    return output
