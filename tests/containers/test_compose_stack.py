"""The compose stack (docker-compose.yml, `make test-compose`): the tiny DAG through Airflow's REST API on
CeleryExecutor with 2 workers, one x86 device (pi1) and the emulated arm64 device (pi_arm64).

`make test-compose` brings the stack up (arm64 profile) and runs the ``compose`` tests; `make test-containers`
(the containers tier of .ci/run) calls it, then `make compose-down`. These tests never start or stop the
stack. Artifacts are read back through MinIO's published port with the root user (test-side only, as
in the other tiers' clean-up; its password from .env); the pipeline itself used its service account. Every REST
call logs in (scripts/compose/demo.py: admin, its password from .env).

The device part (deploy + benchmark) is read through ``wait_for_device_benchmarks`` only: an ``edgeops_rollout``
run started through the REST API for the nightly run (canary pi1, then pi2 and the emulated arm64 Pi, from
config/fleet.json; the tiny profile never ships by itself, so its announce is skipped); the worker assertions
stay on the nightly DAG's tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from scripts.compose import demo
from tasks.core import keys
from tasks.core.keys import parse_s3_uri, run_key
from tests.secret_probe import CANARY_VAR, task_argv

pytestmark = pytest.mark.compose  # selected only by `make test-compose`; deselected (not skipped) elsewhere
NIGHTLY = demo.DAG_ID  # edgeops_nightly: train, quantize x mode, evaluate, gate, publish, announce
ROLLOUT = demo.ROLLOUT_DAG_ID  # deploy + benchmark
MODES = {"fp32", "fp16", "dynamic", "int8"}
DEVICES = ["pi1", "pi2", "pi_arm64"]  # config/fleet.json: pi1 the canary, pi2 and pi_arm64 in wave 1
BENCH_TASKS = ("canary.benchmark", "waves.benchmark")
MINIO = f"http://127.0.0.1:{os.environ.get('EDGEOPS_MINIO_PORT', '19000')}"
DEVICE_TIMEOUT_S = int(os.environ.get("EDGEOPS_COMPOSE_DEVICE_TIMEOUT", "900"))


def require_stack() -> None:
    try:
        urllib.request.urlopen(demo.API + "/api/v2/version", timeout=10).close()
    except OSError:
        pytest.fail(f"the compose stack does not answer at {demo.API}; "
                    "run: EDGEOPS_COMPOSE_PROFILES=arm64 make compose-up", pytrace=False)


def trigger(conf: dict[str, Any], prefix: str = "ctest") -> str:
    """Seed the data, unpause the nightly DAG and start one run of it through the REST API; its run id."""
    require_stack()
    demo.in_worker("seed")
    demo.wait_for_dag()
    for dag_id in (NIGHTLY, ROLLOUT):
        demo.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    run_id = f"{prefix}__{os.getpid()}_{os.urandom(3).hex()}"
    demo.api("POST", f"/dags/{NIGHTLY}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
    return run_id


def task_instances(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    return demo.api("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances?limit=100")[
        "task_instances"]


def _xcom(dag_id: str, run_id: str, task_id: str, map_index: int) -> Any:
    entry = demo.api("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}"
                            f"/xcomEntries/return_value?map_index={map_index}")
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def _run_for(dag_id: str, pipeline_run_id: str, deadline: float) -> str:
    """The run of ``dag_id`` that handles the nightly run ``pipeline_run_id``: that run itself for the nightly
    DAG; for the rollout DAG, a run started by hand for it through the REST API, as ``edgeops rollout --run``
    does (the tiny profile never ships by itself: its announce is skipped, so no asset event starts one)."""
    if dag_id == NIGHTLY:
        return pipeline_run_id
    rollout_run_id = f"ctest_rollout__{run_key(pipeline_run_id)}"
    path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(rollout_run_id)}"
    try:
        demo.api("GET", path)
    except SystemExit:  # not started yet (demo.api: HTTP 404)
        conf = {"action": "forward", "run_id": run_key(pipeline_run_id)}
        demo.api("POST", f"/dags/{dag_id}/dagRuns", {"dag_run_id": rollout_run_id, "logical_date": None, "conf": conf})
    assert time.time() < deadline
    return rollout_run_id


def wait_for_device_benchmarks(run_id: str, dag_id: str = ROLLOUT, task_ids: tuple[str, ...] = BENCH_TASKS,
                               timeout_s: int = DEVICE_TIMEOUT_S) -> dict[str, dict[str, Any]]:
    """The device part of pipeline run ``run_id``: wait until the rollout run that deploys and benchmarks it is
    done (it must succeed), then return its ``BenchmarkResult`` records (XComs of the mapped ``task_ids``) by
    device."""
    deadline = time.time() + timeout_s
    dag_run_id = _run_for(dag_id, run_id, deadline)
    path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(dag_run_id)}"
    while (state := demo.api("GET", path)["state"]) not in ("success", "failed"):
        assert time.time() < deadline, f"{dag_id} run {dag_run_id} still {state} after {timeout_s}s"
        time.sleep(10)
    tis = [t for t in task_instances(dag_id, dag_run_id) if t["task_id"] in task_ids]
    assert state == "success", json.dumps([(t["task_id"], t.get("map_index"), t["state"]) for t in tis])
    assert tis and all(t["state"] == "success" for t in tis), f"{task_ids}: {[t['state'] for t in tis]}"
    benches = [_xcom(dag_id, dag_run_id, t["task_id"], t["map_index"]) for t in tis]
    return {b["device"]: b for b in benches}


@pytest.fixture(scope="module")
def compose_run() -> tuple[str, str, list[dict[str, Any]]]:
    run_id = trigger({"profile": "tiny", "task_runner": "local"})
    state = demo.wait_for_run(run_id)
    return run_id, state, task_instances(NIGHTLY, run_id)


@pytest.fixture(scope="module")
def compose_store():
    from scripts.compose import dotenv
    from scripts.devstack.common import load_stack
    from tasks.core.storage import ArtifactStore, make_client

    # compose's MinIO root: generated into .env at the first compose-up (never config/stack.json's)
    root = make_client(MINIO, dotenv.value(dotenv.MINIO_ROOT_USER), dotenv.value(dotenv.MINIO_ROOT_PASSWORD))
    return ArtifactStore(root, load_stack()["minio"]["artifacts_bucket"])


@pytest.fixture(scope="module")
def manifest(compose_run, compose_store) -> dict[str, Any]:
    return compose_store.get_json(keys.manifest(run_key(compose_run[0])))


def test_nightly_run_succeeds_on_two_workers(compose_run):
    run_id, state, tis = compose_run
    assert state == "success", json.dumps([(t["task_id"], t.get("map_index"), t["state"]) for t in tis])
    ml = [t for t in tis if t["task_id"] in ("train", "quantize", "evaluate", "gate", "publish")]
    assert ml and all(t["state"] == "success" for t in ml)
    assert [t["state"] for t in tis if t["task_id"] == "announce"] == ["skipped"]  # tiny never ships by itself
    hosts = {t["hostname"] for t in tis if t.get("hostname")}
    assert len(hosts) >= 2, f"all task instances of {run_id} ran on {hosts}"


def test_manifest_code_version_and_verified_artifacts(compose_run, manifest, compose_store):
    from tasks.core.manifest import RunManifest
    from tasks.core.version import code_version
    from tasks.registry import runs

    assert manifest["run_id"] == run_key(compose_run[0])
    # up.sh passes the checkout's code_version() into every container (images carry no .git)
    assert manifest["code_version"] not in ("", "unknown", None)
    assert manifest["code_version"] == (os.environ.get("EDGEOPS_CODE_VERSION") or code_version())
    assert manifest["config"]["execution"]["runner"] == "local"
    assert set(manifest["variants"]) == MODES
    # every object re-downloaded: size + sha256 = manifest (read through the one decoder, as every reader does)
    assert runs.verify(compose_store, RunManifest.from_dict(manifest)) == []


def test_devices_report_benchmarks_with_an_emulated_aarch64(compose_run, manifest, compose_store):
    benches = wait_for_device_benchmarks(compose_run[0])
    assert sorted(benches) == DEVICES
    arm = benches["pi_arm64"]
    assert arm["arch"] == "aarch64" and arm["label"] == "emulated"
    assert benches["pi1"]["arch"] == "x86_64"
    for bench in benches.values():
        lat = bench["models"][bench["current_variant"]]["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"], bench["device"]
        ref = bench["record"]  # rollouts/<id>/devices/<device>.json: bench.py's document, pinned by sha256
        bucket, key = parse_s3_uri(ref["uri"])
        data = compose_store.get_bytes(key, bucket=bucket)
        assert len(data) == ref["size_bytes"] and hashlib.sha256(data).hexdigest() == ref["sha256"], ref["uri"]


# --- closed by default: steps read no secrets, devices apart (docs/security.md) ---------------------------------
AIRFLOW_SECRETS = ("fernet_key", "jwt_secret", "api_secret_key", "sql_alchemy_conn", "celery_result_backend",
                   "celery_broker_url", "simple_auth_manager_passwords.json", "signing.json")
BACKEND = ("minio:9000", "postgres:5432", "redis:6379", "airflow-apiserver:8080")


def compose_exec(service: str, *argv: str, env: dict[str, str] | None = None) -> str:
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    out = subprocess.run(["docker", "compose", "exec", "-T", *flags, service, *argv], cwd=demo.REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_a_step_in_a_worker_reads_no_secrets():
    """The probe spawned by a worker's local runner (as edgeops-step) reads neither /secrets, the device client
    keys nor any root process's environment; the control (a plain child of the worker's root) reads them all."""
    require_stack()
    paths = [f"/secrets/{n}" for n in AIRFLOW_SECRETS] + [f"/keys/client_{d}_ed25519" for d in DEVICES]
    canary = f"canary-{os.urandom(8).hex()}"
    env = {CANARY_VAR: canary, "PYTHONPATH": "/opt/edgeops:/opt/edgeops/plugins"}
    control = json.loads(compose_exec("airflow-worker", *task_argv("python", paths, canary, control=True),
                                      env=env).splitlines()[-1])
    assert set(paths) <= set(control["found"]) and any("(canary)" in f for f in control["found"]), control
    step = json.loads(compose_exec("airflow-worker", *task_argv("python", paths, canary), env=env).splitlines()[-1])
    assert step["uid"] != 0 and 0 not in step["groups"], step
    assert step["found"] == [], f"a step in a worker read: {step['found']}"


def _container_ip(service: str) -> str:
    ids = subprocess.run(["docker", "compose", "ps", "-q", service], cwd=demo.REPO, capture_output=True, text=True,
                         check=True).stdout.split()
    return subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                           ids[0]], capture_output=True, text=True, check=True).stdout.split()[0]


REACH = r"""
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), 3).close()
        out[target] = "connected"
    except OSError as exc:
        out[target] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.mark.parametrize("device", ["pi1", "pi-arm64"])
def test_a_device_reaches_no_backend_and_holds_no_private_key(device):
    require_stack()
    by_ip = [f"{_container_ip(t.split(':')[0])}:{t.split(':')[1]}" for t in BACKEND]
    reach = json.loads(compose_exec(device, "python3", "-c", REACH, *BACKEND, *by_ip).splitlines()[-1])
    assert "connected" not in reach.values(), reach
    keys_found = compose_exec(device, "sh", "-c", "grep -rlI 'PRIVATE KEY' /etc /home /root /keys "
                                                  "2>/dev/null || true").split()
    assert keys_found == ["/etc/edgeops-ssh/host_key"], keys_found  # its own host key, nothing else


LOGIN = r"""
import base64, json, paramiko, sys
out = {}
for name, user, key, host, device in json.loads(sys.argv[1]):
    client = paramiko.SSHClient()
    kind, blob = open(f"/keys/ssh_host_{device}_ed25519_key.pub").read().split()[:2]  # pinned, as the platform
    client.get_host_keys().add(host, kind, paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))
    try:
        client.connect(host, 22, user, key_filename=key, look_for_keys=False, allow_agent=False, timeout=20)
        out[name] = "logged in"
    except paramiko.AuthenticationException:
        out[name] = "refused"
    finally:
        client.close()
print(json.dumps(out))
"""


def test_each_device_takes_only_its_own_key_and_no_root():
    require_stack()
    cases = [("own", "pi", "/keys/client_pi1_ed25519", "pi1", "pi1"),
             ("other device's key", "pi", "/keys/client_pi2_ed25519", "pi1", "pi1"),
             ("root", "root", "/keys/client_pi1_ed25519", "pi1", "pi1"),
             ("arm64 own", "pi", "/keys/client_pi_arm64_ed25519", "pi-arm64", "pi_arm64"),
             ("arm64 root", "root", "/keys/client_pi_arm64_ed25519", "pi-arm64", "pi_arm64")]
    out = json.loads(compose_exec("airflow-worker", "python", "-c", LOGIN, json.dumps(cases)).splitlines()[-1])
    assert out == {"own": "logged in", "other device's key": "refused", "root": "refused",
                   "arm64 own": "logged in", "arm64 root": "refused"}, out
