"""Nightly TFLite pipeline: train, quantize x mode, evaluate, gate, deploy x device, benchmark x device, publish.

This file only wires tasks. ML code lives in ``tasks/`` (run by a runner), device code in ``plugins/``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, get_current_context, task
from edgeops_airflow.device_operators import DeviceBenchmarkOperator, DeviceDeployOperator
from edgeops_airflow.params import dag_params
from edgeops_airflow.step_operator import StepOperator

MINIO_CONN_ID = "edgeops_minio"
BUCKET = "artifacts"

DOC = """
### edgeops nightly

Retrains the model, builds the TFLite variants (**fp32**, **fp16**, **dynamic range**, **full int8** calibrated on
the *train* split), evaluates each on the *test* split, gates them on accuracy drop versus fp32, deploys the
passing ones to every device over SSH (pinned host keys), benchmarks them **on the device**, and publishes an
HTML report and `runs/<run_id>/manifest.json` (written last) to MinIO.

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
}

with DAG(
    dag_id="edgeops_nightly",
    description="Nightly retrain, quantize, evaluate, deploy to Pis and benchmark on them",
    # No start_date: with catchup=False the first run is the next 02:00 UTC after the DAG is unpaused,
    # not an immediate run for the tick already past (which a start_date in the past would cause).
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC", run_immediately=False),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params=dag_params(),
    doc_md=DOC,
    tags=["edgeops", "tflite", "raspberry-pi"],
) as dag:

    @task(multiple_outputs=True, retries=0, execution_timeout=timedelta(minutes=2))
    def resolve_config() -> dict[str, Any]:
        """Validate the Params into one config; bad input fails here, before any compute."""
        from edgeops_airflow.params import resolve

        ctx = get_current_context()
        return resolve(dict(ctx["params"]), ctx["run_id"])

    @task(retries=0, execution_timeout=timedelta(minutes=2))
    def device_names(devices: list[str]) -> list[str]:
        """A plain list to map the deploy over (Airflow cannot map over one key of a multi-output XCom)."""
        return list(devices)

    @task(retries=0, execution_timeout=timedelta(minutes=2))
    def quantize_inputs(config: dict[str, Any], trained: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"mode": mode, "model_uri": trained["model_uri"]} for mode in config["quantize"]["modes"]]

    @task(multiple_outputs=False, retries=0, execution_timeout=timedelta(minutes=2))
    def evaluate_inputs(trained: dict[str, Any], quantized: list[dict[str, Any]]) -> dict[str, Any]:
        return {"model_uri": trained["model_uri"], "tflite": {q["mode"]: q["uri"] for q in quantized}}

    @task(multiple_outputs=False, retries=0, execution_timeout=timedelta(minutes=2))
    def gate(config: dict[str, Any], evaluated: dict[str, Any], quantized: list[dict[str, Any]]) -> dict[str, Any]:
        """Blessing step: which variants ship and which becomes ``current`` (smallest that passes)."""
        from tasks.config import GateConfig
        from tasks.gate import select

        g = config["gate"]
        chosen = select(evaluated["variants"], GateConfig(g["max_accuracy_drop_pp"], tuple(g["deploy_variants"])))
        return {**chosen, "tflite": {q["mode"]: q["uri"] for q in quantized}, "sample_key": evaluated["sample_key"]}

    resolved = resolve_config()
    run_id, config = resolved["run_id"], resolved["config"]
    common = {"run_id": run_id, "config": config, "artifacts_conn_id": MINIO_CONN_ID, "bucket": BUCKET}

    train = StepOperator(task_id="train", step="train", execution_timeout=timedelta(hours=3), **common)
    quantize = StepOperator.partial(
        task_id="quantize", step="quantize", map_index_template="{{ task.inputs['mode'] }}", **common
    ).expand(inputs=quantize_inputs(config, train.output))
    evaluate = StepOperator(task_id="evaluate", step="evaluate",
                                 inputs=evaluate_inputs(train.output, quantize.output), **common)
    blessed = gate(config, evaluate.output, quantize.output)
    deploy = DeviceDeployOperator.partial(
        task_id="deploy", run_id=run_id, artifacts_conn_id=MINIO_CONN_ID, bucket=BUCKET, gate=blessed,
        map_index_template="{{ task.device }}", execution_timeout=timedelta(minutes=20),
    ).expand(device=device_names(resolved["devices"]))
    benchmark = DeviceBenchmarkOperator.partial(
        task_id="benchmark", run_id=run_id, artifacts_conn_id=MINIO_CONN_ID, bucket=BUCKET,
        bench=config, execution_timeout=timedelta(minutes=30),
    ).expand(deploy=deploy.output)
    publish = StepOperator(task_id="publish", step="publish",
                                inputs={"gate": blessed, "devices": benchmark.output}, **common)
