"""The whole nightly DAG through Airflow's dag.test(), on the real MinIO and sshd devices, tiny profile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks import keys
from tasks.config import safe_run_id
from tests.helpers import export_connections

pytestmark = pytest.mark.integration
MODES = {"fp32", "fp16", "dynamic", "int8"}


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "edgeops_nightly.py"
    return DagBag(dag_folder=str(dag_file)).dags["edgeops_nightly"]


@pytest.fixture(scope="module")
def finished_run(request):
    """Run the DAG once for the module (it is the expensive part) and hand the tests its outcome."""
    stack_env = request.getfixturevalue("stack_env")
    request.getfixturevalue("airflow_db")
    request.getfixturevalue("digits")
    mp = pytest.MonkeyPatch()
    export_connections(mp, stack_env["connections"])
    devices = [d["name"] for d in stack_env["devices"] if d.get("kind") != "qemu"]  # emulated: containers tier
    try:
        dag_run = _dag().test(run_conf={"profile": "tiny", "devices": devices})
    finally:
        mp.undo()
    return dag_run, devices


def test_run_succeeds(finished_run):
    dag_run, _ = finished_run
    assert str(dag_run.state) in ("success", "DagRunState.SUCCESS")


def test_manifest_lists_four_verified_variants(finished_run, artifact_store):
    from tasks import runs

    dag_run, devices = finished_run
    run_id = safe_run_id(dag_run.run_id)
    manifest = artifact_store.get_json(keys.manifest(run_id))
    assert manifest["run_id"] == run_id and manifest["config"]["profile"] == "tiny"
    assert set(manifest["variants"]) == MODES
    keys_in_manifest = {a["key"] for a in manifest["artifacts"]}
    assert {keys.tflite(run_id, m) for m in MODES} <= keys_in_manifest
    assert keys.report(run_id) in keys_in_manifest and keys.manifest(run_id) not in keys_in_manifest
    assert runs.verify(artifact_store, manifest) == []
    assert [d["device"] for d in manifest["devices"]] == sorted(devices)


def test_devices_point_at_this_release_and_reported_benchmarks(finished_run, stack_env, artifact_store):
    dag_run, used = finished_run
    run_id = safe_run_id(dag_run.run_id)
    manifest = artifact_store.get_json(keys.manifest(run_id))
    for dev in (d for d in stack_env["devices"] if d["name"] in used):
        current = Path(dev["deploy_root"]) / "current"
        assert os.path.realpath(current) == str(Path(dev["deploy_root"]) / "releases" / run_id)
        entry = next(d for d in manifest["devices"] if d["device"] == dev["name"])
        assert entry["current_variant"] == manifest["gate"]["current"]
        assert (current / f"{entry['current_variant']}.tflite").exists()
        bench = artifact_store.get_json(keys.device(run_id, dev["name"]))
        assert set(bench["results"]) == set(manifest["gate"]["deploy"])
        current_bench = entry["models"][entry["current_variant"]]
        lat = current_bench["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert 0.0 <= current_bench["accuracy"] <= 1.0


def test_malformed_params_fail_before_compute_and_write_no_manifest(stack_env, airflow_db, airflow_connections,
                                                                    artifact_store):
    dag_run = _dag().test(run_conf={"profile": "tiny", "modes": ["int8"], "devices": ["pi1"]})
    assert "failed" in str(dag_run.state).lower()
    assert not artifact_store.exists(keys.manifest(safe_run_id(dag_run.run_id)))
    assert not list(artifact_store.list(keys.run_prefix(safe_run_id(dag_run.run_id))))
