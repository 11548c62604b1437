"""A device stale for more than N hours notifies: the nightly's ``watch_fleet`` task reads ``fleet status``
from the store and sends one notice per such device through ``edgeops_notify`` (``edgeops_airflow.notify``).

Stale since: when the newest rollout that targeted it (and marked it failed, skipped or not reached, or left it
elsewhere) ended. N: ``$EDGEOPS_STALE_HOURS`` (default 24).
"""

from __future__ import annotations

import datetime as dt
import os

from edgeops_airflow.notify import Notice, deliver
from tasks.core import keys, names
from tasks.core.exceptions import ConfigError
from tasks.fleet.status import STALE, DeviceStatus

ENV_STALE_HOURS = "EDGEOPS_STALE_HOURS"


def stale_hours() -> float:
    raw = os.environ.get(ENV_STALE_HOURS, "24")
    try:
        hours = float(raw)
    except ValueError:
        hours = -1.0
    if hours <= 0:
        raise ConfigError(f"{ENV_STALE_HOURS}={raw!r}: give the hours a device may stay stale, a number > 0")
    return hours


def stale_notices(rows: list[DeviceStatus], ended_at: dict[str, str], hours: float,
                  now: dt.datetime) -> list[Notice]:
    """One notice per device stale for more than ``hours`` (``ended_at``: rollout id -> its record's time)."""
    out = []
    for row in rows:
        since = ended_at.get(row.last_rollout, "")
        if row.status != STALE or not since:
            continue
        age_h = (now - dt.datetime.fromisoformat(since.replace("Z", "+00:00"))).total_seconds() / 3600
        if age_h > hours:
            out.append(Notice(
                "device_stale", f"device {row.device} stale for {age_h:.0f} h (more than {hours:g} h)",
                (row.reason or "stale", f"runs {row.release or 'nothing'}"),
                {"record": f"s3://{names.ARTIFACTS_BUCKET}/{keys.rollout_record(row.last_rollout)}"}))
    return out


def watch() -> int:
    """Read the fleet's status from the store and notify each long-stale device; returns how many."""
    from edgeops_airflow.store import artifact_store
    from tasks.fleet.history import recent_records
    from tasks.fleet.inventory import load_inventory
    from tasks.fleet.status import fleet_status

    store = artifact_store(names.MINIO_CONN_ID, names.ARTIFACTS_BUCKET)
    records = recent_records(store)
    rows = fleet_status(store, load_inventory(), records)
    notices = stale_notices(rows, {r.rollout_id: r.created_at for r in records}, stale_hours(),
                            dt.datetime.now(dt.UTC))
    for notice in notices:
        deliver(notice)
    return len(notices)
