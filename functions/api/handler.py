"""The read-and-act API: GET /messages/{id}, GET /messages, POST /messages/{id}/replay|cancel,
POST /messages/replay (bulk), GET /replays/{id},
and a sender's targets: PUT /targets, GET /targets, DELETE /targets/{id} (id: the origin without its `//`),
and a target's circuit breaker: GET /targets/health?origin=..., POST /targets/resume,
cron schedules: PUT/GET/DELETE /schedules/{name}, GET /schedules, POST /schedules/{name}/pause|resume;
a sender's operational notifications: PUT/GET/DELETE /notifications;
and the web console's files: GET /console, GET /console/{asset} (functions/services/http_api/console.py).

The sender comes from the authorizer's context, never from the request. The console's routes are
the only ones without the authorizer: they serve static files and read no data.
"""

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.adapters.observability import step_handler
from functions.contract.console_routes import ASSET_PARAMETER, CONSOLE_PATH
from functions.domain.config import get_settings
from functions.domain.exceptions import FieldError, MessageInvalid
from functions.domain.web.json_text import loads_strict
from functions.services.http_api.api_errors import register_error_handlers

if TYPE_CHECKING:
    from functions.adapters.repository import MessageRepository
    from functions.services.http_api.console import Asset
    from functions.services.http_api.operations import Cancelled, MessagePage, ReplayStarted

# Each route's modules load on its first use (imports inside the routes): a cold start pays for the
# router alone, and a route then for what it needs (`make bench`, cold start: within 1.5x of boto3).

app = APIGatewayRestResolver()
register_error_handlers(app)


def _sender() -> str:
    authorizer = app.current_event.request_context.authorizer
    sender = authorizer.get("senderId") if authorizer else None
    if not sender:  # API Gateway never lets an unauthenticated call through; this is defence in depth
        raise PermissionError("no authenticated sender")
    return str(sender)


def _message_id(raw: str) -> str:
    # API Gateway REST hands the Lambda the path as sent, percent-encoded (relay.client quotes
    # every id, so "order:1" arrives as "order%3A1"); no messageId contains "%", so decoding is safe.
    return unquote(raw)


def _repository() -> "MessageRepository":
    from functions.adapters.repository import MessageRepository

    return MessageRepository(get_settings().table_name)


@app.get("/messages/<message_id>")
def get_message(message_id: str) -> dict[str, Any]:
    from functions.services.http_api import operations

    query = app.current_event.query_string_parameters or {}
    return operations.get_status(_repository(), _sender(), _message_id(message_id), query.get("eventsCursor"))


@app.get("/messages")
def list_messages() -> "MessagePage":
    from functions.services.http_api import operations

    query = app.current_event.query_string_parameters or {}
    return operations.list_messages(
        _repository(), _sender(), query.get("status"), query.get("limit"), query.get("cursor")
    )


@app.post("/messages/replay")
def replay_messages() -> Response[dict[str, Any]]:
    from functions.adapters.stores.replay_repository import ReplayRepository
    from functions.adapters.workflows import Workflows
    from functions.services import replays

    settings = get_settings()
    repository = ReplayRepository(settings.table_name)
    body = replays.start_job(repository, Workflows(), settings, _sender(), app.current_event.body)
    return Response(status_code=202, content_type="application/json", body=body)


@app.get("/replays/<job_id>")
def get_replay(job_id: str) -> dict[str, Any]:
    from functions.adapters.stores.replay_repository import ReplayRepository
    from functions.services import replays

    return replays.get_job(ReplayRepository(get_settings().table_name), _sender(), unquote(job_id))


@app.post("/messages/<message_id>/replay")
def replay_message(message_id: str) -> Response["ReplayStarted"]:
    from functions.adapters.queue import DeliveryQueue
    from functions.services.http_api import operations

    settings = get_settings()
    body = operations.replay(
        _repository(), DeliveryQueue(settings.queue_url), settings, _sender(), _message_id(message_id)
    )
    return Response(status_code=202, content_type="application/json", body=body)


@app.post("/messages/<message_id>/cancel")
def cancel_message(message_id: str) -> "Cancelled":
    from functions.services.http_api import operations

    return operations.cancel(_repository(), _sender(), _message_id(message_id))


def _health_store() -> Any:
    from functions.adapters.stores.target_health_store import TargetHealthRepository

    return TargetHealthRepository.from_settings(get_settings())


def _targets() -> Any:
    from functions.adapters.stores.target_store import TargetRepository

    return TargetRepository(get_settings().table_name)


@app.put("/targets")
def put_target() -> dict[str, Any]:
    from functions.domain import flow

    target = flow.validate_target(flow.json_body(app.current_event.body))
    return dict(_targets().put(_sender(), target).to_dict())


@app.get("/targets")
def list_targets() -> dict[str, Any]:
    from functions.services.targeting import target_health

    return {"items": target_health.targets_view(_targets(), _health_store(), _sender())}


@app.delete("/targets/<target_id>")
def delete_target(target_id: str) -> dict[str, Any]:
    from functions.services.targeting import targets

    # The id as GET /targets lists it ("https:hooks.example.com"), as sent: percent-encoded or not.
    return targets.delete_target(_targets(), _sender(), unquote(target_id))


@app.get("/targets/health")
def target_health_view() -> dict[str, Any]:
    from functions.services.targeting import target_health

    query = app.current_event.query_string_parameters or {}
    return target_health.target_health_view(_health_store(), _sender(), str(query.get("origin") or ""))


@app.post("/targets/resume")
def resume_target() -> dict[str, Any]:
    from functions.adapters.queue import DeliveryQueue
    from functions.services.targeting import target_health

    settings = get_settings()
    try:
        body = loads_strict(app.current_event.body or "{}")
    except ValueError:
        raise MessageInvalid([FieldError("$", "must be a JSON object with an origin")]) from None
    origin = body.get("origin") if isinstance(body, dict) else None
    return target_health.resume_target(
        _repository(),
        _health_store(),
        DeliveryQueue(settings.queue_url),
        settings,
        _sender(),
        origin,
    )


def _schedules() -> Any:
    from functions.adapters.stores.schedule_repository import ScheduleRepository

    return ScheduleRepository(get_settings().table_name)


@app.put("/schedules/<name>")
def put_schedule(name: str) -> dict[str, Any]:
    from functions.services.scheduling import schedules

    return schedules.put_schedule(_schedules(), get_settings(), _sender(), unquote(name), app.current_event.body)


@app.get("/schedules")
def list_schedules() -> dict[str, Any]:
    from functions.services.scheduling import schedules

    return schedules.list_schedules(_schedules(), _sender())


@app.get("/schedules/<name>")
def get_schedule(name: str) -> dict[str, Any]:
    from functions.services.scheduling import schedules

    return schedules.get_schedule(_schedules(), _sender(), unquote(name))


@app.delete("/schedules/<name>")
def delete_schedule(name: str) -> dict[str, Any]:
    from functions.services.scheduling import schedules

    return schedules.delete_schedule(_schedules(), _sender(), unquote(name))


@app.post("/schedules/<name>/pause")
def pause_schedule(name: str) -> dict[str, Any]:
    from functions.services.scheduling import schedules

    return schedules.set_paused(_schedules(), _sender(), unquote(name), paused=True)


@app.post("/schedules/<name>/resume")
def resume_schedule(name: str) -> dict[str, Any]:
    from functions.services.scheduling import schedules

    return schedules.set_paused(_schedules(), _sender(), unquote(name), paused=False)


def _notifications() -> Any:
    from functions.adapters.stores.notification_store import NotificationStore

    return NotificationStore(get_settings().table_name)


@app.put("/notifications")
def put_notifications() -> dict[str, Any]:
    from functions.services.reporting import notifications

    return notifications.put(_notifications(), get_settings(), _sender(), app.current_event.body)


@app.get("/notifications")
def get_notifications() -> dict[str, Any]:
    from functions.services.reporting import notifications

    return notifications.get(_notifications(), _sender())


@app.delete("/notifications")
def delete_notifications() -> dict[str, Any]:
    from functions.services.reporting import notifications

    return notifications.delete(_notifications(), _sender())


def _served(asset: "Asset") -> Response[str]:
    return Response(status_code=200, content_type=asset.content_type, body=asset.body, headers=asset.headers)


@app.get(CONSOLE_PATH)
def console_page() -> Response[str]:
    from functions.services.http_api import console

    if app.current_event.path.endswith("/"):
        # The page's links are relative to /console (the stage's prefix is unknown to it): from
        # /console/ they would miss, so the browser is sent to /console (relative: any prefix).
        return Response(status_code=308, headers={"Location": "../console"}, body="")
    return _served(console.page())


@app.get(f"{CONSOLE_PATH}/<{ASSET_PARAMETER}>")
def console_asset(asset: str) -> Response[str]:
    from functions.services.http_api import console

    found = console.asset(unquote(asset))
    if found is None:
        raise NotFoundError()
    return _served(found)


@step_handler(correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
