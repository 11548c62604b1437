"""The whole nightly DAG with task_runner=docker: ML steps in the step image, one x86 and one arm64 device."""

from __future__ import annotations

import pytest

from tasks import keys
from tasks.config import safe_run_id
from tests.helpers import export_connections

pytestmark = pytest.mark.containers
MODES = {"fp32", "fp16", "dynamic", "int8"}


@pytest.fixture(scope="module")
def docker_run(request):
    from tests.integration.test_nightly_dag import _dag

    stack_env = request.getfixturevalue("stack_env")
    request.getfixturevalue("airflow_db")
    request.getfixturevalue("digits")
    arm = [d["name"] for d in stack_env["devices"] if d.get("arch") == "arm64"]
    if not arm:
        pytest.fail("no arm64 device is up; run: make test-containers (or devstack up --with-containers)")
    chosen = ["pi1", arm[0]]
    mp = pytest.MonkeyPatch()
    export_connections(mp, stack_env["connections"])
    try:
        dag_run = _dag().test(run_conf={"profile": "tiny", "task_runner": "docker", "devices": chosen})
    finally:
        mp.undo()
    return dag_run, chosen, arm[0]


def test_docker_run_succeeds_and_verifies(docker_run, artifact_store):
    from tasks import runs

    dag_run, chosen, _ = docker_run
    assert "success" in str(dag_run.state).lower()
    manifest = artifact_store.get_json(keys.manifest(safe_run_id(dag_run.run_id)))
    assert manifest["config"]["execution"]["runner"] == "docker"
    assert set(manifest["variants"]) == MODES
    assert runs.verify(artifact_store, manifest) == []
    assert sorted(d["device"] for d in manifest["devices"]) == sorted(chosen)


def test_arm64_device_reports_an_emulated_aarch64_benchmark(docker_run, artifact_store):
    dag_run, _, arm = docker_run
    manifest = artifact_store.get_json(keys.manifest(safe_run_id(dag_run.run_id)))
    entry = next(d for d in manifest["devices"] if d["device"] == arm)
    assert entry["arch"] == "aarch64" and entry["label"] == "emulated"
    lat = entry["models"][entry["current_variant"]]["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"]
    x86 = next(d for d in manifest["devices"] if d["device"] == "pi1")
    assert x86["arch"] == "x86_64" and x86["label"] == "host"
