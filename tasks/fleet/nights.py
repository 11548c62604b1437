"""The last good night, where people look: ``edgeops fleet status`` prints the newest blessed run (from the
store's manifests: what a rollout ships) and the newest nightly run with its state (from Airflow's REST API
when it answers, else the newest manifest with state "unknown"), each with how long ago it was."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tasks.core import names
from tasks.core.exceptions import AirflowApiError, StorageError
from tasks.core.results import Record
from tasks.core.storage import ArtifactStore

UNKNOWN = "unknown"


@dataclass(frozen=True)
class LastNights(Record):
    """Two lines of ``fleet status`` (``--json``: its ``nights``). Times are ISO 8601 UTC ("" = none)."""

    blessed_run: str
    blessed_at: str
    nightly_run: str
    nightly_state: str  # Airflow's run state, or "unknown" when Airflow did not answer
    nightly_at: str
    note: str = ""  # why the state is unknown


def ago(iso: str, now: dt.datetime) -> str:
    """'3h 12m ago' for an ISO 8601 time; 'never' for ''."""
    if not iso:
        return "never"
    try:
        then = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return UNKNOWN
    minutes = max(0, int((now - (then if then.tzinfo else then.replace(tzinfo=dt.UTC))).total_seconds() // 60))
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    return (f"{days}d {hours}h" if days else f"{hours}h {mins}m" if hours else f"{mins}m") + " ago"


def last_nights(store: ArtifactStore, api: Any | None) -> LastNights:
    """``api``: a ``tasks.fleet.airflow_api.AirflowApi`` (None: do not ask Airflow)."""
    from tasks.registry import runs

    try:
        blessed = runs.newest_blessed(store)
        blessed_run, blessed_at = blessed.run_id, blessed.created_at
    except StorageError:
        blessed_run, blessed_at = "", ""
    note = "Airflow not asked"
    if api is not None:
        try:
            run = api.newest_run(names.NIGHTLY_DAG_ID)
            if run is None:
                return LastNights(blessed_run, blessed_at, "", "", "")
            at = str(run.get("end_date") or run.get("start_date") or run.get("run_after") or "")
            return LastNights(blessed_run, blessed_at, str(run["dag_run_id"]), str(run.get("state")), at)
        except AirflowApiError as exc:
            note = str(exc)
    newest = runs.recent_manifests(store, 1)
    return LastNights(blessed_run, blessed_at, newest[0].run_id if newest else "", UNKNOWN,
                      newest[0].created_at if newest else "", note)


def lines(nights: LastNights, now: dt.datetime) -> list[str]:
    blessed = (f"{nights.blessed_run} ({ago(nights.blessed_at, now)})" if nights.blessed_run
               else "none (no blessed run of a shipping profile)")
    nightly = (f"{nights.nightly_run}: {nights.nightly_state} ({ago(nights.nightly_at, now)})"
               if nights.nightly_run else "none")
    out = [f"newest blessed run: {blessed}", f"newest nightly:     {nightly}"]
    if nights.nightly_state == UNKNOWN and nights.note:
        out.append(f"  (state unknown: {nights.note})")
    return out
