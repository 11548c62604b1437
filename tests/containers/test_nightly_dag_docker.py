"""The nightly DAG with task_runner=docker (ML steps in the step image), then its rollout to one x86 and one
emulated arm64 device, each a canary of its own device class.

`make test-docker-runner` (~12 min: each step container costs 30-90 s to create on vfs). Marked ``slow``, so
`.ci/run`'s containers tier, which runs the DAG on the compose stack instead, leaves it out; the step image
itself stays in CI through test_tasks_image.py."""

from __future__ import annotations

import json

import pytest

from tasks.core import keys
from tasks.core.keys import safe_run_id
from tests.helpers import export_connections

pytestmark = [pytest.mark.containers, pytest.mark.slow]
MODES = {"fp32", "fp16", "dynamic", "int8"}


def _fleet(path, arm: str):
    budgets = {"p95_latency_ms": 60000.0, "peak_rss_mb": 4000.0, "accuracy_tolerance": 0.5}
    path.write_text(json.dumps({
        "groups": {"x86_sim": {"threads": 1, "budgets": budgets, "app": {"http_port": 0}},
                   "arm64_emulated": {"threads": 1, "budgets": budgets, "app": {"http_port": 0}}},
        "devices": [{"name": "pi1", "group": "x86_sim", "wave": 0},
                    {"name": arm, "group": "arm64_emulated", "wave": 0}],
    }))
    return path


@pytest.fixture(scope="module")
def docker_run(request, tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    stack_env = request.getfixturevalue("stack_env")
    request.getfixturevalue("airflow_db")
    request.getfixturevalue("digits")
    arm = [d["name"] for d in stack_env["devices"] if d.get("arch") == "arm64"]
    if not arm:
        pytest.fail("no arm64 device is up; run: make test-docker-runner (or devstack up --with-containers)")
    bag = DagBag(dag_folder=str(REPO / "dags"))
    mp = pytest.MonkeyPatch()
    export_connections(mp, stack_env["connections"])
    mp.setenv("EDGEOPS_FLEET", str(_fleet(tmp_path_factory.mktemp("fleet") / "fleet.json", arm[0])))
    try:
        nightly = bag.dags["edgeops_nightly"].test(run_conf={"profile": "tiny", "task_runner": "docker"})
        rollout = bag.dags["edgeops_rollout"].test(run_conf={"run_id": safe_run_id(nightly.run_id)})
    finally:
        mp.undo()
    return nightly, rollout, arm[0]


def test_docker_run_succeeds_and_verifies(docker_run, artifact_store):
    from tasks.registry import runs

    nightly, _, _ = docker_run
    assert "success" in str(nightly.state).lower()
    manifest = artifact_store.get_json(keys.manifest(safe_run_id(nightly.run_id)))
    assert manifest["config"]["execution"]["runner"] == "docker"
    assert set(manifest["variants"]) == MODES
    assert runs.verify(artifact_store, manifest) == []


def test_rollout_measures_each_device_class_on_its_canary(docker_run, artifact_store):
    nightly, rollout, arm = docker_run
    assert "success" in str(rollout.state).lower()
    record = artifact_store.get_json(keys.rollout_record(safe_run_id(rollout.run_id)))
    assert record["status"] == "succeeded" and record["run_id"] == safe_run_id(nightly.run_id)
    assert set(record["choices"]) == {"x86_sim", "arm64_emulated"}
    by_device = {d["device"]: d for d in record["devices"]}
    bench = artifact_store.get_json(keys.rollout_device(safe_run_id(rollout.run_id), arm))
    assert bench["device"]["arch"] == "aarch64" and by_device[arm]["label"] == "emulated"
    lat = by_device[arm]["bench"][by_device[arm]["variant"]]["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"]
    assert by_device["pi1"]["label"] == "host" and by_device[arm]["status"] == by_device["pi1"]["status"] == "switched"
