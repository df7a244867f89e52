"""The status report of `bloomctl status` and GET /admin/state: endpoint, desired state, next change, cost.

Building it reads SageMaker and the control table and writes nothing.
"""

from datetime import datetime
from typing import Any

from control_plane.desired import ON, next_change
from control_plane.endpoint import ABSENT, describe_endpoint
from control_plane.reconciler import BLOCKED, Reconciler, blocking_failure
from control_plane.usage import month_figures


def build_report(reconciler: Reconciler) -> dict:
    settings = reconciler.settings
    now = reconciler.clock()
    endpoint = describe_endpoint(reconciler.clients.sagemaker, settings.endpoint_name)
    status = reconciler.store.get_status()
    desired = reconciler.current_desired()

    observed = status.get("observed") or {}
    if endpoint is not None:
        since = endpoint.creation_time if endpoint.status == "Creating" else endpoint.last_modified_time
    elif observed.get("status") == ABSENT and observed.get("since"):
        since = datetime.fromisoformat(observed["since"])
    else:
        since = None

    change = next_change(desired, settings.schedule)
    month_hours, month_cost = month_figures(status.get("usage"), now, settings.hourly_price_usd)
    run_seconds = (now - endpoint.creation_time).total_seconds() if endpoint and endpoint.billed else 0.0
    run_hours = max(run_seconds, 0.0) / 3600
    instances = endpoint.instance_count if endpoint else 0

    return {
        "endpoint": {
            "name": settings.endpoint_name,
            "status": endpoint.status if endpoint else ABSENT,
            "since": since.isoformat() if since else None,
            "config": endpoint.config_name if endpoint else None,
            "created_at": endpoint.creation_time.isoformat() if endpoint else None,
            "failure_reason": endpoint.failure_reason if endpoint else None,
            "instances": instances,
        },
        "desired": desired.to_dict(),
        "next_change": {"at": change[0].isoformat(), "state": change[1], "cause": change[2]} if change else None,
        "cost": {
            "hourly_price_usd": settings.hourly_price_usd,
            "run_hours": round(run_hours, 3),
            "run_cost_usd": round(run_hours * instances * settings.hourly_price_usd, 2),
            "month_hours": round(month_hours, 3),
            "month_cost_usd": round(month_cost, 2),
            "estimate": True,
        },
        "failure": status.get("failure"),
        "start_blocked": start_blocked(status, desired, endpoint),
        "last_run": status.get("last_run"),
        "expected_start_seconds": expected_start_seconds(reconciler, status),
        "generated_at": now.isoformat(),
    }


def start_blocked(status: dict, desired: Any, endpoint: Any) -> bool:
    """Return whether the model should run but does not start: a failed start, or a check such as the
    weights manifest that rejected the last run."""
    if blocking_failure(status, desired) is not None:
        return True
    last_run = status.get("last_run") or {}
    return desired.state == ON and endpoint is None and last_run.get("action") == BLOCKED


def expected_start_seconds(reconciler: Reconciler, status: dict | None = None) -> int:
    """Return how long a start takes: the last measured start, else the profile's estimate."""
    status = reconciler.store.get_status() if status is None else status
    measured = status.get("last_start_seconds")
    if measured:
        return int(measured)
    return int(reconciler.settings.expected_start_minutes * 60)
