"""Lambda handler of the admin routes: POST /admin/start, POST /admin/stop and GET /admin/state.

API Gateway lets only IAM-signed requests through (AuthorizationType AWS_IAM); the caller's IAM ARN is
recorded as who asked. A start or stop writes the desired state and invokes the reconciler asynchronously,
so the response comes back at once; GET /admin/state shows the progress.
"""

import json
from datetime import timedelta

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError
from aws_lambda_powertools.logging import correlation_paths

from control_plane.desired import RequestError
from control_plane.reconciler import REQUEST
from control_plane.report import build_report
from control_plane.runtime import build_reconciler, configure_logging

logger = configure_logging()
app = APIGatewayRestResolver()
reconciler = None

MAX_REASON_LENGTH = 200


def _reconciler():
    global reconciler
    if reconciler is None:
        reconciler = build_reconciler()
    return reconciler


def _caller() -> str:
    identity = app.current_event.request_context.identity
    return identity.user_arn or identity.caller or "unknown-iam-caller"


def _body() -> dict:
    raw = app.current_event.body
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as error:
        raise BadRequestError(f"The request body is not valid JSON: {error.msg}") from None
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object")
    return body


def _reason(body: dict) -> str | None:
    reason = body.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
        raise BadRequestError(f"reason must be a string of at most {MAX_REASON_LENGTH} characters")
    return reason


def _hours(body: dict) -> timedelta | None:
    hours = body.get("hours")
    if hours is None:
        return None
    if isinstance(hours, bool) or not isinstance(hours, (int, float)):
        raise BadRequestError(f"hours={hours!r} is invalid: expected a number of hours, for example 4")
    return timedelta(hours=hours)


def _accepted(desired) -> Response:
    control = _reconciler()
    control.clients.lambda_.invoke(
        FunctionName=control.settings.reconciler_function_name,
        InvocationType="Event",
        Payload=json.dumps({"trigger": REQUEST}).encode(),
    )
    body = {"desired": desired.to_dict(), "message": "Accepted; GET /admin/state shows the progress."}
    return Response(status_code=202, content_type="application/json", body=json.dumps(body))


@app.post("/admin/start")
def start() -> Response:
    body = _body()
    try:
        desired = _reconciler().start(_caller(), _hours(body), _reason(body))
    except RequestError as error:
        raise BadRequestError(str(error)) from None
    logger.info("Start requested through the admin API", extra={"requested_by": desired.requested_by})
    return _accepted(desired)


@app.post("/admin/stop")
def stop() -> Response:
    body = _body()
    desired = _reconciler().stop(_caller(), _reason(body))
    logger.info("Stop requested through the admin API", extra={"requested_by": desired.requested_by})
    return _accepted(desired)


@app.get("/admin/state")
def state() -> dict:
    return build_report(_reconciler())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict, context) -> dict:
    return app.resolve(event, context)
