"""Nightly TFLite pipeline: train, quantize x mode, evaluate, gate, publish, announce a blessed model.

This file only wires tasks. ML code and decisions live in ``tasks/`` (run by a runner); every arrow carries a
declared record from ``tasks/core/results.py``. Devices are the rollout DAG's (``edgeops_rollout.py``), which the
``announce`` task's asset event starts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, get_current_context, task
from edgeops_airflow.fan_out import fan_out
from edgeops_airflow.new_data import dataset_asset, nightly_cron
from edgeops_airflow.notify import announce_skipped, nightly_deadline_alert, task_failed
from edgeops_airflow.params import dag_params
from edgeops_airflow.reliability import PLUMBING_RETRIES
from edgeops_airflow.rollout import blessed_model_asset
from edgeops_airflow.step_operator import StepOperator

from tasks.core.names import NIGHTLY_DAG_ID

DOC = """
### edgeops nightly

Retrains the model, builds the TFLite variants (**fp32**, **fp16**, **dynamic range**, **full int8** calibrated on
the *train* split, **pruned**, **qat_int8**), evaluates each on the *test* split, and **gates** them. The run
ends with an HTML report and `runs/<run_id>/manifest.json` (written last) in MinIO; then **announce** emits the
`edgeops_blessed_model` asset event, which starts `edgeops_rollout` (canary first, on-device gate). A run whose
model is not blessed skips announce (nothing reaches a device) and says why in the gate log and the report.

* Runs at **02:00 UTC** (`EDGEOPS_NIGHTLY_CRON`), and also when **new data lands**: uploads under the default
  profile's `data.source` (e.g. `s3://datasets/digits/`) reach the triggerer through MinIO bucket notifications,
  and one burst of uploads (debounced: `EDGEOPS_NEW_DATA_QUIET_SECONDS` of quiet) makes one asset event, hence
  one run.
* Trigger by hand with **Trigger DAG w/ config**: every knob is a typed Param; empty = the profile's value.
* Artifacts: `s3://artifacts/runs/<run_id>/` (MinIO console). `edgeops runs show latest` prints the manifest.
* Host latencies are labelled `host`; only device benchmarks on real Pis are Pi figures.
"""

default_args = {
    "owner": "edgeops",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
    "on_failure_callback": task_failed,  # a final failure (not a try that is retried) notifies edgeops_notify
}

with DAG(
    dag_id=NIGHTLY_DAG_ID,
    description="Nightly retrain, quantize, evaluate and gate; a blessed run announces its release to the rollout",
    # No start_date: with catchup=False the first run is the next 02:00 UTC after the DAG is unpaused,
    # not an immediate run for the tick already past (which a start_date in the past would cause).
    # ... or when the dataset asset gets an event: its AssetWatcher's trigger debounces MinIO's notifications.
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(nightly_cron(), timezone="UTC", run_immediately=False),
        assets=dataset_asset(),
    ),
    # A missed 02:00 (stack down) is run once, when the scheduler starts: catchup=False creates only the newest
    # missed tick. A night still running at the next 02:00 keeps going; the next one is queued behind it
    # (max_active_runs=1), never run in parallel on the same 2 cores.
    catchup=False,
    max_active_runs=1,
    # Not finished this long after it was queued (EDGEOPS_NIGHTLY_DEADLINE_HOURS, default 6; 0 = off): notify.
    deadline=nightly_deadline_alert(),
    default_args=default_args,
    params=dag_params(),
    doc_md=DOC,
    tags=["edgeops", "tflite", "raspberry-pi"],
) as dag:

    @task(multiple_outputs=True, execution_timeout=timedelta(minutes=2), **PLUMBING_RETRIES)
    def resolve_config() -> dict[str, Any]:  # a RunPlan
        """Validate every Param and the run id: bad input fails here, at once, before compute; an
        infrastructure error (API server, MinIO, a connection lookup) is retried."""
        from edgeops_airflow.params import resolve
        from edgeops_airflow.reliability import fatal_is_final, fault_point

        fault_point("resolve_config")
        ctx = get_current_context()
        with fatal_is_final():
            return resolve(dict(ctx["params"]), ctx["run_id"], ctx["dag_run"].clear_number or 0).to_xcom()

    plan = resolve_config()
    step = {"run_id": plan["run_id"], "config": plan["config"]}

    train = StepOperator(task_id="train", step="train", execution_timeout=timedelta(hours=3), **step)
    quantize = StepOperator.partial(
        task_id="quantize", step="quantize", inputs={"train": train.output}, map_index_template="{{ task.mode }}",
        **step,
    ).expand(mode=fan_out.override(task_id="modes")(plan, "modes"))
    evaluate = StepOperator(task_id="evaluate", step="evaluate",
                            inputs={"train": train.output, "quantized": quantize.output}, **step)
    gate = StepOperator(task_id="gate", step="gate", inputs={"evaluation": evaluate.output}, **step)
    publish = StepOperator(
        task_id="publish", step="publish",
        inputs={"train": train.output, "evaluation": evaluate.output, "verdict": gate.output}, **step,
    )

    @task(outlets=[blessed_model_asset()], execution_timeout=timedelta(minutes=2),
          on_skipped_callback=announce_skipped, **PLUMBING_RETRIES)
    def announce(run_key: str, config: dict[str, Any], verdict: dict[str, Any], published: dict[str, Any]) -> None:
        """Emit the blessed-model asset event (run id, variants) for the rollout; skipped when not blessed or
        when the profile may not ship (test profiles)."""
        from edgeops_airflow.reliability import fatal_is_final
        from edgeops_airflow.rollout import announce_blessed

        with fatal_is_final():
            announce_blessed(run_key, config, verdict, published, get_current_context())

    announce(plan["run_id"], plan["config"], gate.output, publish.output)

    @task(execution_timeout=timedelta(minutes=5), **PLUMBING_RETRIES)
    def watch_fleet() -> int:
        """Notify each device stale for more than $EDGEOPS_STALE_HOURS (default 24): one notice per device."""
        from edgeops_airflow.fleet_watch import watch
        from edgeops_airflow.reliability import fatal_is_final

        with fatal_is_final():
            return watch()

    watch_fleet()  # no upstream: the fleet is watched every night, whatever the training does
