"""The compose stack (docker-compose.yml, `make test-compose`): the tiny DAG through Airflow's REST API on
CeleryExecutor with 2 workers, one x86 device and the emulated arm64 device.

`make test-compose` brings the stack up (arm64 profile) and runs this module (marker ``compose``); every other
target deselects it, so `make test-containers` (the process dev stack) is unchanged. The test never starts or
stops the stack.
Artifacts are read back through MinIO's published port with the root user (test-side only, as in the other
tiers' clean-up); the pipeline itself used its service account.
"""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from scripts.compose import demo
from tasks import keys
from tasks.config import run_key

pytestmark = pytest.mark.compose  # selected only by `make test-compose`; deselected (not skipped) elsewhere
MODES = {"fp32", "fp16", "dynamic", "int8"}
MINIO = f"http://127.0.0.1:{os.environ.get('EDGEOPS_MINIO_PORT', '19000')}"


@pytest.fixture(scope="module")
def compose_run():
    try:
        urllib.request.urlopen(demo.API + "/api/v2/version", timeout=10).close()
    except OSError:
        pytest.fail(f"the compose stack does not answer at {demo.API}; "
                    "run: EDGEOPS_COMPOSE_PROFILES=arm64 make compose-up")
    demo.in_worker("seed")
    demo.wait_for_dag()
    demo.api("PATCH", f"/dags/{demo.DAG_ID}", {"is_paused": False})
    run_id = f"ctest__{os.getpid()}_{os.urandom(3).hex()}"
    conf = {"profile": "tiny", "task_runner": "local", "devices": ["pi1", "pi_arm64"]}
    demo.api("POST", f"/dags/{demo.DAG_ID}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
    state = demo.wait_for_run(run_id)
    return run_id, state, demo.task_instances(run_id)


@pytest.fixture(scope="module")
def compose_store():
    from scripts.devstack.common import load_stack
    from tasks.storage import ArtifactStore, make_client

    m = load_stack()["minio"]
    return ArtifactStore(make_client(MINIO, m["access_key"], m["secret_key"]), m["artifacts_bucket"])


def test_run_succeeds_on_two_workers(compose_run):
    run_id, state, tis = compose_run
    assert state == "success", json.dumps([(t["task_id"], t["state"]) for t in tis])
    hosts = {t["hostname"] for t in tis if t.get("hostname")}
    assert len(hosts) >= 2, f"all task instances ran on {hosts}"


def test_manifest_and_verified_artifacts(compose_run, compose_store):
    from tasks import runs

    manifest = compose_store.get_json(keys.manifest(run_key(compose_run[0])))
    assert manifest["config"]["execution"]["runner"] == "local"
    assert set(manifest["variants"]) == MODES
    assert runs.verify(compose_store, manifest) == []
    assert sorted(d["device"] for d in manifest["devices"]) == ["pi1", "pi_arm64"]


def test_arm64_device_reports_an_emulated_aarch64_benchmark(compose_run, compose_store):
    manifest = compose_store.get_json(keys.manifest(run_key(compose_run[0])))
    arm = next(d for d in manifest["devices"] if d["device"] == "pi_arm64")
    assert arm["arch"] == "aarch64" and arm["label"] == "emulated"
    lat = arm["models"][arm["current_variant"]]["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"]
