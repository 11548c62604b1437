"""Hourly collection: every device's edgeops-serve telemetry and samples into MinIO.

This file only wires tasks. The work is ``tasks/fleet/collect.py``, the operator
``plugins/edgeops_airflow/collect.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, task
from edgeops_airflow.collect import DeviceCollectOperator, drift_alias, drift_asset
from edgeops_airflow.reliability import PLUMBING_RETRIES

from tasks.core.names import COLLECT_DAG_ID, DEVICE_POOL

DOC = """
### edgeops collect

Every hour, pulls what `edgeops-serve` wrote on each device of the fleet (`config/fleet.json`) into MinIO,
one mapped task per device over its own SSH connection (pinned host key):

* **telemetry** files whose hour has ended (`"final": true`) to `artifacts/telemetry/<device>/<release>/`;
* **samples** (low-confidence inputs and a uniform reservoir) to `<dataset>/_incoming/<device>/<release>/`,
  the dataset being the `data.source` of the run the release came from. Training never reads `_incoming/`;
  move a sample into `<dataset>/<class>/` to label it, which starts a retrain through the new-data watcher.

Then `drift` compares each device's current release with its test split (PSI and chi-square of the predicted
classes and the confidence, `tasks/fleet/drift.py`; thresholds: the fleet group's `drift` object). Each
drifting (device, release) emits an `edgeops_drift` asset event (extra: the verdict), which a DAG may be
scheduled on (e.g. to retrain); a device that newly drifts is notified through `edgeops_notify`.

A file is deleted on the device only after a HEAD of its uploaded object shows the same sha256; a re-run after a
cut connection re-uploads to the same key and duplicates nothing. An optional device that is offline is skipped.
Same as `edgeops collect` from a shell.
"""

with DAG(
    dag_id=COLLECT_DAG_ID,
    description="Hourly: edgeops-serve telemetry and samples from every device into MinIO, exactly once in effect",
    schedule="@hourly",
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "edgeops", "retries": 2, "retry_delay": timedelta(minutes=2),
                  "execution_timeout": timedelta(minutes=30)},
    doc_md=DOC,
    tags=["edgeops", "collect", "raspberry-pi"],
) as dag:

    @task(execution_timeout=timedelta(minutes=2), **PLUMBING_RETRIES)
    def devices() -> list[dict[str, Any]]:
        """The fleet inventory's devices (a bad inventory fails here, before any device is touched)."""
        from edgeops_airflow.collect import collect_targets
        from edgeops_airflow.reliability import fatal_is_final

        with fatal_is_final():
            return collect_targets()

    collected = DeviceCollectOperator.partial(task_id="collect", pool=DEVICE_POOL,
                                              map_index_template="{{ task.target['name'] }}").expand(target=devices())

    # inlets: declares the drift asset, so the alias can emit events of it before any DAG is scheduled on it
    @task(trigger_rule="all_done", inlets=[drift_asset()], outlets=[drift_alias()],
          execution_timeout=timedelta(minutes=10), **PLUMBING_RETRIES)
    def drift() -> list[dict[str, Any]]:
        """Each device's current release vs its test split: an edgeops_drift event per drifting one."""
        from airflow.sdk import get_current_context
        from edgeops_airflow.collect import check_drift
        from edgeops_airflow.reliability import fatal_is_final

        with fatal_is_final():
            return check_drift(get_current_context())

    collected >> drift()
