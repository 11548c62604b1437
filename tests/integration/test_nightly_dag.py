"""The whole nightly DAG through Airflow's dag.test(), on the real MinIO, tiny profile (devices: test_rollout_dag)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core import keys
from tasks.core.keys import safe_run_id
from tasks.core.manifest import RunManifest

pytestmark = pytest.mark.integration
MODES = {"fp32", "fp16", "dynamic", "int8"}


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "edgeops_nightly.py"
    return DagBag(dag_folder=str(dag_file)).dags["edgeops_nightly"]


@pytest.fixture(scope="module")
def finished_run(nightly_run):
    return nightly_run


def test_run_succeeds_and_a_test_profile_never_announces(finished_run):
    """tiny is blessed on its own terms, but its profile may not ship: no asset event, so no rollout starts."""
    dag_run = finished_run
    assert str(dag_run.state) in ("success", "DagRunState.SUCCESS")
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states["gate"] == "success" and states["announce"] == "skipped", states


def test_manifest_lists_four_verified_variants(finished_run, artifact_store):
    from tasks.registry import runs

    run_id = safe_run_id(finished_run.run_id)
    manifest = artifact_store.get_json(keys.manifest(run_id))
    assert manifest["run_id"] == run_id and manifest["config"]["profile"] == "tiny"
    assert set(manifest["variants"]) == MODES
    keys_in_manifest = {a["key"] for a in manifest["artifacts"]}
    assert {keys.tflite(run_id, m) for m in MODES} <= keys_in_manifest
    assert keys.report(run_id) in keys_in_manifest and keys.manifest(run_id) not in keys_in_manifest
    assert runs.verify(artifact_store, RunManifest.from_dict(manifest)) == []
    assert "devices" not in manifest  # device results live in the rollout records


def test_malformed_params_fail_before_compute_and_write_no_manifest(stack_env, airflow_db, airflow_connections,
                                                                    artifact_store):
    dag_run = _dag().test(run_conf={"profile": "tiny", "modes": ["int8"]})
    assert "failed" in str(dag_run.state).lower()
    assert not artifact_store.exists(keys.manifest(safe_run_id(dag_run.run_id)))
    assert not list(artifact_store.list(keys.run_prefix(safe_run_id(dag_run.run_id))))
