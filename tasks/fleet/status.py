"""``edgeops fleet status``: what every device of the inventory runs, from the store alone.

For each device: its state record (``devices/<name>/state.json``, written at every switch of ``current``) and
the newest finished rollout that targeted it (``rollouts/<id>/record.json``, newest by LastModified). Status:

* ``ok``: the device runs what the newest rollout that targeted it switched it to;
* ``stale``: that rollout marked it ``failed``, ``skipped`` or ``not_reached``, or its state release differs from
  what the rollout switched it to (the device was not where the rollout wanted it);
* ``never deployed``: no rollout ever switched it.

A state written by a rollout newer than every record (still running, or it died before its record) counts as
``ok`` with a note. ``--check`` also asks the devices themselves over SSH (a ``DeviceReader``: where
``current`` points and the kept releases, ``tasks.device.records.OnDevice``) and says ``drift`` when a device
disagrees with its state record. From the CLI it reads each device's connection from ``AIRFLOW_CONN_<ID>``
(``eval $(.venv/bin/python -m scripts.devstack env --shell)`` exports them); Airflow is not needed.

The DRIFT column is something else: data drift of the release the device runs (``tasks.fleet.drift``, its
production traffic against its test split): ``ok 0.03`` or ``drift 0.41`` (the larger PSI),
``insufficient (n req)``, ``no baseline``, or ``-`` without a release.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

from tasks.core.exceptions import EdgeOpsError
from tasks.core.results import Record
from tasks.core.storage import ArtifactStore
from tasks.device.records import OnDevice
from tasks.device.transport import EnvTransport
from tasks.fleet import drift
from tasks.fleet.drift import DriftSettings, DriftVerdict
from tasks.fleet.history import read_state, recent_records
from tasks.fleet.inventory import Device, Inventory
from tasks.fleet.records import DeviceOutcome, DeviceState, Outcome, RolloutRecord

OK, STALE, NEVER, DRIFT, UNREACHABLE = "ok", "stale", "never deployed", "drift", "unreachable"
DAMAGED = "damaged"  # --check: files of the device's current release fail sha256sum -c on the device
COLUMNS = ("device", "group", "wave", "release", "run_id", "variant", "since", "by", "drift", "status")
CHECK_COLUMNS = (*COLUMNS[:-1], "on_device", "status")


@dataclass(frozen=True)
class DeviceStatus(Record):
    """One row of ``edgeops fleet status`` (``--json`` prints these)."""

    device: str
    group: str
    wave: int
    status: str  # ok | stale | never deployed | drift | unreachable
    release: str | None = None
    run_id: str | None = None
    variant: str | None = None
    since: str = ""  # when the state record's switch happened (ISO 8601 UTC)
    by: str = ""  # "<rollout id> (<action>)" of that switch
    reason: str = ""
    last_rollout: str = ""  # the newest finished rollout that targeted the device
    last_outcome: str = ""  # what that rollout recorded for it: switched | rolled_back | failed | skipped | not_reached
    on_device: str | None = None  # --check: the release ``current`` points at on the device
    kept: tuple[str, ...] = ()  # --check: releases kept on the device, newest first
    drift: DriftVerdict | None = None  # production traffic vs the release's test split (tasks.fleet.drift)


def newest_outcome(records: list[RolloutRecord], device: str) -> tuple[RolloutRecord, DeviceOutcome] | None:
    """The newest record (``records`` newest first) with an outcome for ``device``, and that outcome."""
    for record in records:
        for outcome in record.devices:
            if outcome.device == device:
                return record, outcome
    return None


def judge(state: DeviceState | None, last: tuple[RolloutRecord, DeviceOutcome] | None) -> tuple[str, str]:
    """(status, reason) of one device from its state record and the newest rollout that targeted it."""
    if state is None:
        return NEVER, f"rollout {last[0].rollout_id} marked it {last[1].status}" if last else ""
    if last is None:
        return OK, f"switched by rollout {state.rollout_id}, which has no record (running, or it did not finish)"
    record, outcome = last
    if state.rollout_id != record.rollout_id and state.switched_at > record.created_at:
        return OK, (f"switched by rollout {state.rollout_id} after {record.rollout_id} ended; it has no record yet "
                    "(running, or it did not finish)")
    if outcome.status in (Outcome.FAILED, Outcome.SKIPPED, Outcome.NOT_REACHED):
        note = f": {outcome.note}" if outcome.note else ""
        return STALE, f"rollout {record.rollout_id} ({record.status}) marked it {outcome.status}{note}"
    if outcome.release != state.release:
        return STALE, (f"rollout {record.rollout_id} switched it to {outcome.release or 'no release'}, but its state "
                       f"record says {state.release or 'no release'}")
    return OK, ""


def device_status(device: Device, state: DeviceState | None, records: list[RolloutRecord]) -> DeviceStatus:
    last = newest_outcome(records, device.name)
    status, reason = judge(state, last)
    s = state
    return DeviceStatus(
        device=device.name, group=device.group, wave=device.wave, status=status, reason=reason,
        release=s.release if s else None, run_id=s.run_id if s else None, variant=s.variant if s else None,
        since=s.switched_at if s else "", by=f"{s.rollout_id} ({s.action})" if s else "",
        last_rollout=last[0].rollout_id if last else "", last_outcome=last[1].status if last else "")


def fleet_status(store: ArtifactStore, inventory: Inventory, records: list[RolloutRecord] | None = None
                 ) -> list[DeviceStatus]:
    """One row per inventory device, from the store only (no device is contacted)."""
    records = recent_records(store) if records is None else records
    rows = [device_status(d, read_state(store, d.name), records) for d in inventory.devices]
    return [with_drift(store, r, inventory.group(r.group).drift) for r in rows]


def with_drift(store: ArtifactStore, row: DeviceStatus, settings: DriftSettings) -> DeviceStatus:
    """The row with the drift verdict of its release (none without a release): the DRIFT column."""
    if not row.release:
        return row
    return dataclasses.replace(row, drift=drift.check(store, row.device, row.release, settings))


# --- --check: ask the devices -------------------------------------------------------------------------------
class DeviceReader(Protocol):
    """Reads what a device itself keeps (one SSH round trip through the device's connection, pinned host key).
    The Airflow side passes one backed by Airflow's connections; the CLI ``read_with_env_connection``."""

    def __call__(self, device: Device) -> OnDevice: ...


def read_with_env_connection(device: Device) -> OnDevice:
    """The CLI's ``DeviceReader``: the device's connection from ``AIRFLOW_CONN_<ID>`` in the environment."""
    with EnvTransport(device.name, device.connection, connect_attempts=1) as t:
        return t.on_device()


def check(row: DeviceStatus, device: Device, read: DeviceReader) -> DeviceStatus:
    """Compare the row's state record with the device itself: ``drift`` when they disagree."""
    try:
        seen = read(device)
    except EdgeOpsError as exc:  # DeviceError: no connection, unreachable, host key mismatch
        return dataclasses.replace(row, status=UNREACHABLE, reason=str(exc).splitlines()[0])
    checked = dataclasses.replace(row, on_device=seen.current, kept=seen.kept)
    if seen.current != row.release:
        return dataclasses.replace(checked, status=DRIFT, reason=(
            f"the device's current is {seen.current or 'nothing'}, its state record says {row.release or 'nothing'}"))
    if seen.damaged:
        return dataclasses.replace(checked, status=DAMAGED, reason=(
            f"files of {seen.current} fail sha256sum -c on the device: {', '.join(seen.damaged)}; roll out its run "
            "again to repair it"))
    return checked


# --- output -------------------------------------------------------------------------------------------------
def to_json(rows: list[DeviceStatus], records: list[RolloutRecord], checked: bool) -> dict[str, Any]:
    """``--json``: {"devices": [DeviceStatus...], "rollouts": [the newest few records, summarised], "checked"}."""
    rollouts = [{"rollout_id": r.rollout_id, "action": r.action, "run_id": r.run_id, "status": r.status,
                 "created_at": r.created_at, "summary": r.summary()} for r in records[:5]]
    return {"devices": [r.to_xcom() for r in rows], "rollouts": rollouts, "checked": checked}


def table_rows(rows: list[DeviceStatus]) -> list[dict[str, Any]]:
    """Rows for ``runs.format_table``; a row's reason shows below it unless the device is ok, and so does a
drift verdict's."""
    out = []
    for r in rows:
        row = {**r.to_xcom(), "on_device": r.on_device or ("-" if r.status != UNREACHABLE else "?"),
               "drift": r.drift.cell() if r.drift else "-"}
        notes = [r.reason] if r.reason and r.status != OK else []
        if r.drift and r.drift.status == drift.DRIFT:
            notes.append(f"data drift: {r.drift.reason}")
        if notes:
            row["error"] = "; ".join(notes)
        out.append(row)
    return out
