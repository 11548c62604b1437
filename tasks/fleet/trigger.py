"""``edgeops rollout`` / ``edgeops rollback``: start the ``edgeops_rollout`` DAG through Airflow's REST API.

Devices, groups and the variant are checked against the inventory BEFORE anything is sent (an unknown name is
one ConfigError, exit 2). The DAG's ``plan`` task checks the rest (connections, a blessed run, a release the
device keeps). ``--wait`` follows the run and prints its rollout record from the store; the command exits 0
only when the run succeeded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from tasks.core import keys, names
from tasks.core.exceptions import EdgeOpsError
from tasks.core.keys import run_key
from tasks.core.storage import ArtifactStore
from tasks.fleet.airflow_api import AirflowApi
from tasks.fleet.inventory import Inventory
from tasks.fleet.records import RolloutRecord
from tasks.fleet.rollout import RolloutRequest, select_targets


def split_names(text: str | None) -> tuple[str, ...]:
    """``a,b, c`` -> ("a", "b", "c")."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def rollout_conf(inventory: Inventory, action: str, run_id: str = "", devices: tuple[str, ...] = (),
                 groups: tuple[str, ...] = (), variant: str = "") -> dict[str, Any]:
    """The DAG run's ``conf`` (the Airflow plugin's ``rollout.py::rollout_params``), validated against the
    inventory: unknown devices or groups, a bad variant or an empty selection raise ConfigError."""
    request = RolloutRequest(action=action, run_id=run_id, devices=devices, groups=groups, variant=variant)
    select_targets(inventory, request)
    return {"action": action, "run_id": run_id or None, "devices": list(devices), "groups": list(groups),
            "variant": variant or None}


def new_run_id(action: str, now: dt.datetime | None = None) -> str:
    """An Airflow run id that is already key-safe, so the rollout id equals it (``run_key``)."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S_%fZ")
    return f"cli_{action}__{stamp}"


def record_lines(record: RolloutRecord) -> list[str]:
    """The record as a few lines: summary, reasons, then one line per device."""
    lines = [record.summary(), *(f"  reason: {r}" for r in record.reasons)]
    for c in sorted(record.choices.values(), key=lambda c: c.group):
        lines.append(f"  group {c.group}: {c.variant or 'no variant'} ({c.reasons[0] if c.reasons else ''})")
    for d in record.devices:
        note = f"  ({d.note})" if d.note else ""
        lines.append(f"  {d.device:<12} wave {d.wave}  {d.status:<11}  {d.release or '-'}  "
                     f"[{d.variant or '-'}] {d.label}{note}")
    return lines


def trigger(conf: dict[str, Any], wait: bool, api: AirflowApi | None = None,
            store: Callable[[], ArtifactStore] = ArtifactStore.from_env, say: Callable[[str], None] = print,
            poll_s: float = 5.0) -> str:
    """Trigger the rollout DAG with ``conf``; with ``wait``, follow it and print its record. Returns the
    Airflow run id; raises EdgeOpsError when the waited-for run did not succeed."""
    api = api or AirflowApi.from_env()
    run_id = new_run_id(conf["action"])
    api.trigger(names.ROLLOUT_DAG_ID, conf, run_id)
    say(f"triggered {names.ROLLOUT_DAG_ID} run {run_id}: {conf}")
    say(f"  UI: {api.url}/dags/{names.ROLLOUT_DAG_ID}/runs/{run_id}")
    if not wait:
        return run_id
    state = api.wait(names.ROLLOUT_DAG_ID, run_id, poll_s=poll_s, progress=lambda s: say(f"  run {run_id}: {s}"))
    s = store()
    key = keys.rollout_record(run_key(run_id))
    if s.exists(key):
        for line in record_lines(RolloutRecord.from_xcom(s.get_json(key))):
            say(line)
        say(f"  record: {s.uri(key)}; report: {s.uri(keys.rollout_report(run_key(run_id)))}")
    else:
        say(f"  no rollout record at {s.uri(key)}: the run stopped before its end (see the plan task's log)")
    if state != "success":
        raise EdgeOpsError(f"rollout run {run_id} {state}")
    return run_id
