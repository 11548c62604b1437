"""The device operators end to end: verified artifacts from MinIO -> device -> benchmark record in MinIO,
device state written at the switch, and a switch back.

Operators are instantiated and executed directly (``execute({})``) with connections exported as AIRFLOW_CONN_*
variables; inputs are the declared records (DeviceTask, GateVerdict, DeployResult) and the resolved config.
"""

from __future__ import annotations

import json
import platform
import uuid
from pathlib import Path
from shlex import quote
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient

from tasks.core import keys
from tasks.core.config import load_config
from tasks.core.names import device_conn_id
from tasks.core.results import BenchmarkResult, DeployResult
from tasks.core.verdict import GateVerdict, VariantVerdict
from tasks.device.runtime import RuntimeOptions
from tasks.fleet.records import DeviceTask, SwitchResult
from tests.helpers import export_connections, tiny_tflite_release

pytestmark = pytest.mark.integration
MINIO = "edgeops_minio"


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_tflite_release(tmp_path_factory.mktemp("op"), samples=16)


@pytest.fixture
def env(stack_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    export_connections(monkeypatch, stack_env["connections"])
    return stack_env


def _verdict(store: Any, run_id: str, payload: dict[str, Path], overwrite_sample: bool = False) -> dict[str, Any]:
    refs = {m: store.ref(store.put_file(f"runs/{run_id}/tflite/{m}.tflite", payload[f"{m}.tflite"]))
            for m in ("fp32", "int8")}
    sample = store.ref(store.put_file(f"runs/{run_id}/eval/sample.npz", payload["sample.npz"]))
    if overwrite_sample:  # the object changes after the gate recorded it: an unversioned ref reads new bytes
        store.put_bytes(f"runs/{run_id}/eval/sample.npz", b"not the evaluated sample")
        sample = type(sample)(sample.uri, sample.sha256, sample.size_bytes, None)
    verdicts = {m: VariantVerdict(True, 0.0) for m in refs}
    return GateVerdict(True, ("fp32", "int8"), "int8", (), verdicts, refs, sample, 1.0).to_xcom()


def _target(name: str, run_id: str, release: str | None = "", runtime: RuntimeOptions | None = None,
            connection: str = "") -> dict[str, Any]:
    """A DeviceTask; ``release`` "" = this run's int8 release, None = no release (switch ``current`` off);
    ``connection`` "" = the device's default connection id."""
    return DeviceTask(device=name, group="sim", wave=0, connection=connection or device_conn_id(name),
                      runtime=runtime or RuntimeOptions(threads=1),
                      release=f"{run_id}.int8" if release == "" else release, run_id=run_id, modes=("fp32", "int8"),
                      current="int8").to_xcom()


def _config() -> dict[str, Any]:
    return load_config("tiny", {"bench.warmup": 2, "bench.runs": 100, "bench.threads": 1}).to_dict()


def test_deploy_benchmark_and_switch_back(env: dict[str, Any], payload: dict[str, Path]) -> None:
    from edgeops_airflow.device_operators import DeviceBenchmarkOperator, DeviceDeployOperator, DeviceSwitchOperator
    from edgeops_airflow.store import artifact_store

    name, bucket, run_id = env["devices"][0]["name"], env["s3"]["artifacts_bucket"], f"itest-{uuid.uuid4().hex[:8]}-op"
    store = artifact_store(MINIO, bucket)
    rollout_id, release = f"{run_id}-rollout", f"{run_id}.int8"
    common = {"rollout_id": rollout_id, "artifacts_conn_id": MINIO, "bucket": bucket, "config": _config()}
    verdict = _verdict(store, run_id, payload)
    dev = DeviceClient(name).connect()
    before = dev.run(f"readlink {quote(dev.root)}/current", check=False)[1].strip()
    try:
        raw = DeviceDeployOperator(task_id="deploy", target=_target(name, run_id), verdict=verdict,
                                   **common).execute({})
        json.dumps(raw)  # XCom-serialisable
        deployed = DeployResult.from_xcom(raw)
        assert (deployed.device, deployed.release, deployed.current_variant) == (name, release, "int8")
        assert deployed.arch == platform.machine() and deployed.modes == ("fp32", "int8")
        assert sorted(f.name for f in deployed.files) == sorted([*payload, "bench.py"])
        assert dev.current_release() == release and RuntimeOptions.from_xcom(deployed.options) == RuntimeOptions(1)
        state = store.get_json(keys.device_state(name))
        assert (state["release"], state["run_id"], state["variant"], state["rollout_id"]) == (
            release, run_id, "int8", rollout_id)

        bench = BenchmarkResult.from_xcom(
            DeviceBenchmarkOperator(task_id="benchmark", deploy=raw, **common).execute({}))
        assert bench.label == "host" and bench.arch == platform.machine() and set(bench.models) == {"fp32", "int8"}
        assert bench.record.uri.endswith(keys.rollout_device(rollout_id, name)) and bench.record.version_id
        assert bench.current.latency_ms["p50"] <= bench.current.latency_ms["p95"] <= bench.current.latency_ms["p99"]
        assert bench.current.delegate.name == "xnnpack" and bench.current.threads == 1  # the group's options
        grouped = BenchmarkResult.from_xcom(DeviceBenchmarkOperator(
            task_id="benchmark_grouped", deploy={**raw, "options": {"threads": 2}}, **common).execute({}))
        assert {(m.delegate.name, m.threads) for m in grouped.models.values()} == {("xnnpack", 2)}
        stored = store.get_json(keys.rollout_device(rollout_id, name))
        assert stored["release"] == release and set(stored["results"]) == {"fp32", "int8"}

        back = SwitchResult.from_xcom(DeviceSwitchOperator(
            task_id="back", target=_target(name, run_id, release=before.rsplit("/", 1)[-1] or None),
            **common).execute({}))
        assert back.previous == release and dev.current_release() == (before.rsplit("/", 1)[-1] or None)
        assert store.get_json(keys.device_state(name))["action"] == "rollback"
    finally:
        restore = (f"ln -sfn {quote(before)} {quote(dev.root)}/current.tmp && mv -T {quote(dev.root)}/current.tmp "
                   f"{quote(dev.root)}/current" if before else f"rm -f {quote(dev.root)}/current")
        dev.run(f"{restore}; rm -rf {quote(dev.root)}/releases/{release}", check=False)
        dev.close()


def test_overwritten_artifact_fails_without_retry(env: dict[str, Any], payload: dict[str, Path]) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from edgeops_airflow.device_operators import DeviceDeployOperator
    from edgeops_airflow.store import artifact_store

    name, bucket, run_id = env["devices"][0]["name"], env["s3"]["artifacts_bucket"], f"itest-{uuid.uuid4().hex[:8]}-ov"
    store = artifact_store(MINIO, bucket)
    verdict = _verdict(store, run_id, payload, overwrite_sample=True)
    op = DeviceDeployOperator(task_id="deploy", target=_target(name, run_id), verdict=verdict, rollout_id=run_id,
                              config=_config(), artifacts_conn_id=MINIO, bucket=bucket)
    with pytest.raises(AirflowFailException, match="IntegrityError.*sample.npz"):
        op.execute({})
    with DeviceClient(name) as dev:
        assert dev.run(f"test -e {quote(dev.root)}/releases/{run_id}.int8", check=False)[0] != 0


def test_deploy_with_a_delegate_that_does_not_load_fails_without_retry(env: dict[str, Any],
                                                                       payload: dict[str, Path]) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from edgeops_airflow.device_operators import DeviceDeployOperator
    from edgeops_airflow.store import artifact_store

    name, bucket, run_id = env["devices"][0]["name"], env["s3"]["artifacts_bucket"], f"itest-{uuid.uuid4().hex[:8]}-dl"
    store = artifact_store(MINIO, bucket)
    runtime = RuntimeOptions(threads=1, delegate="/nonexistent/libfoo.so")
    op = DeviceDeployOperator(task_id="deploy", target=_target(name, run_id, runtime=runtime),
                              verdict=_verdict(store, run_id, payload), rollout_id=run_id, config=_config(),
                              artifacts_conn_id=MINIO, bucket=bucket)
    with DeviceClient(name) as dev:
        before = dev.current_release()
        with pytest.raises(AirflowFailException, match="DelegateError: .*smoke test in staging failed: delegate "
                                                       "/nonexistent/libfoo.so failed to load"):
            op.execute({})
        assert dev.current_release() == before
        assert dev.run(f"test -e {quote(dev.root)}/releases/{run_id}.int8", check=False)[0] != 0


def test_invalid_runtime_fails_before_any_device_work(env: dict[str, Any]) -> None:
    from airflow.sdk.exceptions import AirflowFailException
    from edgeops_airflow.device_operators import DeviceBenchmarkOperator

    deployed = DeployResult("pi1", "x86_64", "r1.fp32", "fp32", None, ("fp32",), (), {},
                            options={"threads": 1, "delegate": "libedgetpu.so.1"})
    op = DeviceBenchmarkOperator(task_id="benchmark", deploy=deployed.to_xcom(), rollout_id="r1", config=_config())
    with pytest.raises(AirflowFailException, match="runtime options .* are invalid: .*absolute path"):
        op.execute({})


def test_a_device_with_its_own_connection_is_reached_through_it(env: dict[str, Any], payload: dict[str, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The fleet file names ``my_garage_pi`` for pi2 (pointing at pi2's sshd), while ``edgeops_device_pi2``
    points at pi1: deploy, benchmark and switch back must all go through ``my_garage_pi``, and pi1 stays untouched."""
    from edgeops_airflow.device_operators import DeviceBenchmarkOperator, DeviceDeployOperator, DeviceSwitchOperator
    from edgeops_airflow.store import artifact_store

    from tasks.fleet.inventory import Inventory
    from tasks.fleet.rollout import RolloutRequest, plan_forward
    from tasks.fleet.status import read_with_env_connection
    from tests.helpers import conn_env_var
    from tests.tasks.manifests import manifest as build_manifest

    conns = env["connections"]
    monkeypatch.setenv(conn_env_var("my_garage_pi"), json.dumps(conns[device_conn_id("pi2")]))
    monkeypatch.setenv(conn_env_var(device_conn_id("pi2")), json.dumps(conns[device_conn_id("pi1")]))  # wrong
    budgets = {"p95_latency_ms": 1000, "peak_rss_mb": 1000, "accuracy_tolerance": 1}
    inventory = Inventory.from_dict({"groups": {"sim": {"threads": 1, "budgets": budgets, "app": {"http_port": 0}}},
                                     "devices": [{"name": "pi2", "group": "sim", "wave": 0,
                                                  "connection": "my_garage_pi"}]})
    bucket, run_id = env["s3"]["artifacts_bucket"], f"itest-{uuid.uuid4().hex[:8]}-cn"
    store, release = artifact_store(MINIO, bucket), f"{run_id}.int8"
    verdict = _verdict(store, run_id, payload)
    manifest = build_manifest(run_id, variants={}, gate=GateVerdict.from_xcom(verdict), config=_config())
    target = plan_forward(inventory, RolloutRequest(devices=("pi2",)), f"{run_id}-rollout", manifest).canary[0]
    assert target.connection == "my_garage_pi" and target.runtime.threads == 1
    common = {"rollout_id": f"{run_id}-rollout", "artifacts_conn_id": MINIO, "bucket": bucket, "config": _config()}
    pi2, pi1 = DeviceClient("pi2", "my_garage_pi").connect(), DeviceClient("pi1").connect()
    before = pi2.current_release()
    try:
        raw = DeviceDeployOperator(task_id="deploy", target=target.to_xcom(), verdict=verdict, **common).execute({})
        deployed = DeployResult.from_xcom(raw)
        assert deployed.connection == "my_garage_pi" and pi2.current_release() == release
        assert pi1.run(f"test -e {quote(pi1.root)}/releases/{release}", check=False)[0] != 0  # not the fallback
        bench = BenchmarkResult.from_xcom(
            DeviceBenchmarkOperator(task_id="benchmark", deploy=raw, **common).execute({}))
        assert bench.device == "pi2" and set(bench.models) == {"fp32", "int8"}
        seen = read_with_env_connection(inventory.device("pi2"))  # fleet status --check's read: same connection
        assert seen.current == release and release in seen.kept
        back = SwitchResult.from_xcom(DeviceSwitchOperator(
            task_id="back", target=_target("pi2", run_id, release=before, connection="my_garage_pi"),
            **common).execute({}))
        assert back.previous == release and pi2.current_release() == before
    finally:
        restore = (f"cd {quote(pi2.root)} && ln -sfn releases/{before} current.tmp && mv -T current.tmp current"
                   if before else f"rm -f {quote(pi2.root)}/current")
        pi2.run(f"{restore}; rm -rf {quote(pi2.root)}/releases/{release}", check=False)
        pi2.close()
        pi1.close()
