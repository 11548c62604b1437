"""The loop, end to end, on the real MinIO and sshd devices, through the real DAGs (``dag.test``):

1. a rollout of the session's tiny nightly run (int8) starts edgeops-serve on pi1 and pi2;
2. a load generator on pi1 (the runtime's python over the service's Unix socket, as a local application) sends
   the release's own sample frames continuously while a second rollout (fp32) runs: canary benchmark, gate,
   switch, activate, health. 0 failed requests, both releases served, the new one at the end;
3. the collect DAG brings pi1's telemetry and samples back: telemetry under ``telemetry/pi1/<release>/`` with
   at least the requests the load generator counted, samples under the run's dataset ``_incoming/pi1/<release>/``;
4. a shifted input stream on pi2 (every frame saturated white) raises drift in the same collect run: its verdict
   ``devices/pi2/drift.json`` says ``drift`` for the new release, while pi1, served the release's own sample
   frames, stays ``ok``;
5. a rollout whose group ``health`` fails switches the canary back, and the record says which step failed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from shlex import quote
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient

from tasks.core import keys
from tasks.core.keys import parse_s3_uri, safe_run_id
from tasks.core.names import COLLECT_DAG_ID, ENV_FLEET
from tasks.core.storage import ArtifactStore
from tasks.device import layout
from tasks.fleet.collect import dataset_of_release
from tests.device_load import healthz, load_on, run_load
from tests.helpers import export_connections, task_states

pytestmark = pytest.mark.integration
DAGS = Path(__file__).resolve().parents[2] / "dags"

APP = {"http_port": 0, "health_timeout_s": 30}
DRIFT = {"min_requests": 100}  # the shifted stream sends 300


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS / f"{dag_id}.py")).dags[dag_id]


def _fleet(tmp: Path, name: str, devices: list[tuple[str, int]], app: dict[str, Any]) -> Path:
    doc = {"groups": {"sim": {"threads": 1, "app": app, "drift": DRIFT,
                              "budgets": {"p95_latency_ms": 5000.0, "peak_rss_mb": 4000.0,
                                          "accuracy_tolerance": 0.5}}},
           "devices": [{"name": n, "group": "sim", "wave": w} for n, w in devices]}
    path = tmp / f"fleet-{name}.json"
    path.write_text(json.dumps(doc))
    return path


def _ok(dag_run) -> bool:
    return "success" in str(dag_run.state).lower()


@pytest.fixture
def dags(stack_env, airflow_db, monkeypatch):
    export_connections(monkeypatch, stack_env["connections"])

    def run(dag_id: str, fleet: Path, **conf):
        monkeypatch.setenv(ENV_FLEET, str(fleet))
        return _dag(dag_id).test(run_conf=conf)

    return run


def _stop_service(dev: DeviceClient) -> None:
    """SIGTERM edgeops-serve, which writes its open telemetry periods as final; wait until it has exited."""
    data = quote(layout.serve_data(dev.root))
    dev.run(f"pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' {data}/endpoint.json); [ -n \"$pid\" ] && "
            f"kill $pid; for i in $(seq 100); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; exit 1",
            check=False)


def _fresh_state(name: str) -> None:
    """Stop the service and empty its state dir: earlier modules leave samples of releases whose run has no
    manifest (tests/integration/test_device_serve.py), which a collection rightly refuses and keeps."""
    with DeviceClient(name) as dev:
        _stop_service(dev)
        data = quote(layout.serve_data(dev.root))
        dev.run(f"rm -rf {data}/{layout.SERVE_SAMPLES} {data}/{layout.SERVE_TELEMETRY}")


def _under_load(name: str, rollout) -> tuple[dict[str, Any], Any]:
    """The rollout run while the load generator sends the release's sample frames on the device; (load counts,
    the rollout's DagRun)."""
    with load_on(name, "--body", "frames") as load:
        dag_run = rollout()
        time.sleep(1)
    return load, dag_run


def test_the_loop(blessed_run, dags, stack_env, artifact_store, tmp_path):
    for name in ("pi1", "pi2"):
        _fresh_state(name)
    fleet = _fleet(tmp_path, "loop", [("pi1", 0), ("pi2", 1)], APP)
    old, new = f"{blessed_run}.int8", f"{blessed_run}.fp32"
    first = dags("edgeops_rollout", fleet, run_id=blessed_run, variant="int8")
    assert _ok(first), task_states(first)
    with DeviceClient("pi1") as dev:
        assert healthz(dev)["release"] == old
        load, second = _under_load("pi1", lambda: dags("edgeops_rollout", fleet, run_id=blessed_run,
                                                        variant="fp32"))
        print(f"the loop: {load['ok']} requests served during the rollout, {load['n_failed']} failed, by release "
              f"{load['releases']}")
        assert _ok(second), task_states(second)
        record = artifact_store.get_json(keys.rollout_record(safe_run_id(second.run_id)))
        assert record["status"] == "succeeded" and {d["status"] for d in record["devices"]} == {"switched"}, record
        assert load["n_failed"] == 0, load["failed"]
        assert load["releases"].get(old, 0) > 0 and load["releases"].get(new, 0) > 0, load
        assert healthz(dev)["release"] == new
        _stop_service(dev)  # its open telemetry hours become final (a restart of the service does the same)
    with DeviceClient("pi2") as dev:  # the second wave: fp32 now, and a camera that sees only white
        assert healthz(dev)["release"] == new
        shifted = run_load(dev, "--body", "shifted", "--seconds", "120", "--max", "300", timeout=180)
        assert shifted["n_failed"] == 0 and shifted["ok"] == 300, shifted
        _stop_service(dev)

    collected = dags(COLLECT_DAG_ID, fleet)
    assert _ok(collected), task_states(collected)
    requests = {}
    for release in (old, new):
        files = list(artifact_store.list(keys.telemetry("pi1", release, "")))
        docs = [artifact_store.get_json(o["Key"]) for o in files]
        assert docs and all(d["final"] for d in docs), files
        requests[release] = sum(d["requests"] for d in docs)
    assert requests[new] >= load["releases"][new] and requests[old] >= load["releases"][old], requests
    bucket, prefix = parse_s3_uri(dataset_of_release(artifact_store, new))
    datasets = ArtifactStore(artifact_store.client, bucket)
    samples = {r: list(datasets.list(keys.incoming_sample(prefix, "pi1", r, ""))) for r in (old, new)}
    assert samples[new] and all(o["Key"].endswith(".npz") for o in samples[new]), samples
    print(f"collected: telemetry requests by release {requests}; samples by release "
          f"{ {r: len(s) for r, s in samples.items()} }")
    verdicts = {d: artifact_store.get_json(keys.device_drift(d)) for d in ("pi1", "pi2")}
    print(f"drift: {verdicts}")
    assert verdicts["pi2"]["release"] == new and verdicts["pi2"]["status"] == "drift", verdicts["pi2"]
    assert verdicts["pi2"]["n"] >= 300, verdicts["pi2"]
    assert verdicts["pi1"]["status"] == "ok", verdicts["pi1"]  # its own sample frames: no false alarm


def test_a_failing_health_rolls_the_canary_back_and_the_record_says_why(blessed_run, dags, artifact_store,
                                                                        tmp_path):
    fleet = _fleet(tmp_path, "loop", [("pi1", 0)], APP)
    good = dags("edgeops_rollout", fleet, run_id=blessed_run, variant="fp32")
    assert _ok(good), task_states(good)
    health = 'case "$EDGEOPS_RELEASE" in *.int8) exit 3;; esac'  # the app fails on int8 only
    bad = dags("edgeops_rollout", _fleet(tmp_path, "bad-health", [("pi1", 0)], {**APP, "health": health}),
               run_id=blessed_run, variant="int8")
    assert not _ok(bad), task_states(bad)
    record = artifact_store.get_json(keys.rollout_record(safe_run_id(bad.run_id)))
    pi1 = record["devices"][0]
    print(f"rolled back: {record['status']}; pi1 {pi1['status']}: {pi1['note']}")
    assert record["status"] == "canary_failed" and pi1["status"] == "rolled_back", record
    assert f"health: `{health}` exited 3" in pi1["note"], pi1
    assert f"switched back to {blessed_run}.fp32" in pi1["note"] and pi1["release"] == f"{blessed_run}.fp32", pi1
    assert any("canary pi1 failed after the switch: health:" in r for r in record["reasons"]), record
    with DeviceClient("pi1") as dev:
        assert dev.current_release() == f"{blessed_run}.fp32"
        assert healthz(dev)["release"] == f"{blessed_run}.fp32"
