"""Deploy/benchmark against a real sshd device started by scripts/devstack (no MinIO needed).

Everything is checked through the device's own shell, as it would be on a Pi. The fixture removes the test
releases afterwards and puts ``current`` back where it was.
"""

from __future__ import annotations

import json
import platform
import uuid
from collections.abc import Iterator
from pathlib import Path
from shlex import quote
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient

from tasks.core.exceptions import DeviceError, FatalError, ReleaseConflictError
from tasks.device.records import Switched
from tests.conftest import ENV_FILE
from tests.helpers import conn_env_var, tiny_tflite_release

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tasks" / "device" / "bench.py"


@pytest.fixture(scope="module")
def stack(stack_env: dict[str, Any]) -> dict[str, Any]:
    env = stack_env
    if not env.get("devices"):
        pytest.fail(f"{ENV_FILE} lists no devices; run: .venv/bin/python -m scripts.devstack up --no-airflow")
    return env


@pytest.fixture(scope="module")
def device(stack: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The first device, with its connection exported the way Airflow reads env connections."""
    dev = stack["devices"][0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(conn_env_var(dev["conn_id"]), json.dumps(stack["connections"][dev["conn_id"]]))
        yield dev


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny TFLite variants (fp32, int8), a labelled sample and bench.py: one release's files."""
    return {**tiny_tflite_release(tmp_path_factory.mktemp("payload"), samples=16), "bench.py": BENCH}


def _restore_current(dev: DeviceClient, before: str, remove: str) -> None:
    """Put ``current`` back where it was before the test and delete the test's releases."""
    root = quote(dev.root)
    restore = (
        f"ln -sfn {quote(before)} {root}/current.tmp && mv -T {root}/current.tmp {root}/current"
        if before
        else f"rm -f {root}/current"
    )
    dev.run(f"{restore}; rm -rf {root}/releases/{remove}", check=False)


@pytest.fixture(scope="module")
def deployed(device: dict[str, Any], payload: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """Provision twice, then deploy release A (current int8) and release B (current fp32)."""
    tag = uuid.uuid4().hex[:8]
    run_a, run_b = f"itest-{tag}-a", f"itest-{tag}-b"
    name = device["conn_id"].removeprefix("edgeops_device_")
    with DeviceClient(name) as dev:
        before = dev.run(f"readlink {quote(dev.root)}/current", check=False)[1].strip()
        try:
            first, second = dev.provision(), dev.provision()
            dep_a = dev.deploy(run_a, payload, "int8")
            dep_b = dev.deploy(run_b, payload, "fp32")
            yield {
                "dev": dev,
                "a": run_a,
                "b": run_b,
                "dep_a": dep_a,
                "dep_b": dep_b,
                "prov": (first, second),
            }
        finally:
            _restore_current(dev, before, f"itest-{tag}-*")


def test_provision_is_idempotent(deployed: dict[str, Any]) -> None:
    first, second = deployed["prov"]
    assert second.installed is False
    assert "numpy" in second.packages and {"ai-edge-litert", "tflite-runtime"} & set(second.packages)
    assert first.packages == second.packages


def test_release_layout_and_atomic_switch(deployed: dict[str, Any], payload: dict[str, Path]) -> None:
    dev: DeviceClient = deployed["dev"]
    root, run_a, run_b = dev.root, deployed["a"], deployed["b"]
    listing = dev.run(f"ls {quote(root)}/releases/{run_b}")[1].split()
    assert set(listing) == {*payload, "SHA256SUMS", "release.json", "model.tflite", "STATEMENT.json"}
    dev.run(f"cd {quote(root)}/releases/{run_b} && sha256sum -c --quiet SHA256SUMS")
    assert dev.run(f"readlink {quote(root)}/current")[1].strip() == f"releases/{run_b}"
    assert dev.run(f"readlink {quote(root)}/releases/{run_b}/model.tflite")[1].strip() == "fp32.tflite"
    assert dev.run(f"readlink {quote(root)}/releases/{run_a}/model.tflite")[1].strip() == "int8.tflite"
    assert dev.run(f"test -d {quote(root)}/releases/{run_a} && ! test -e {quote(root)}/current.tmp")[0] == 0
    assert dev.run(f"ls -d {quote(root)}/releases/*.partial", check=False)[0] != 0  # no leftovers

    dep_b = deployed["dep_b"]
    assert dep_b.release == run_b and dep_b.previous == run_a and dep_b.current_variant == "fp32"
    sizes = {f.name: f.size_bytes for f in dep_b.files}
    assert sizes == {name: path.stat().st_size for name, path in payload.items()}


def test_redeploy_is_idempotent_and_run_ids_immutable(
    deployed: dict[str, Any], payload: dict[str, Path]
) -> None:
    dev: DeviceClient = deployed["dev"]
    again = dev.deploy(deployed["b"], payload, "fp32")  # a retried task
    assert again.previous == deployed["a"] and again.files == deployed["dep_b"].files
    assert again.reused is True and deployed["dep_b"].reused is False
    with pytest.raises(ReleaseConflictError, match="different content") as err:
        dev.deploy(deployed["b"], {k: v for k, v in payload.items() if k != "int8.tflite"}, "fp32")
    assert isinstance(err.value, FatalError)  # never retried
    with pytest.raises(ReleaseConflictError, match="another current variant"):
        dev.deploy(deployed["b"], payload, "int8")  # same files, other variant under the same id


def test_rollback_switches_and_checks_health(deployed: dict[str, Any]) -> None:
    dev: DeviceClient = deployed["dev"]
    assert dev.rollback(deployed["a"]) == Switched(release=deployed["a"], previous=deployed["b"])
    assert dev.current_release() == deployed["a"]
    assert dev.rollback(deployed["b"]).previous == deployed["a"] and dev.current_release() == deployed["b"]
    with pytest.raises(ReleaseConflictError, match="no release"):
        dev.rollback("itest-never-deployed")


@pytest.mark.parametrize("bad", ["-rf", ".hidden", "a/b", "x y", "r\n", ""])
def test_unsafe_release_ids_are_refused_before_any_upload(deployed: dict[str, Any], payload, bad: str) -> None:
    with pytest.raises(ReleaseConflictError, match="not a safe name"):
        deployed["dev"].deploy(bad, payload, "fp32")


def test_benchmark_runs_on_the_device(deployed: dict[str, Any]) -> None:
    dev: DeviceClient = deployed["dev"]
    doc = dev.benchmark(deployed["b"], ["fp32", "int8"], {"warmup": 2, "runs": 100, "threads": 1}, "host").document
    assert doc["device"]["arch"] == platform.machine() and doc["label"] == "host"
    assert set(doc["results"]) == {"fp32", "int8"}
    lat = doc["results"]["int8"]["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] and 0 <= doc["results"]["int8"]["accuracy"] <= 1


def test_wrong_pinned_host_key_never_connects(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    dev = stack["devices"][0]
    conn = json.loads(json.dumps(stack["connections"][dev["conn_id"]]))
    extra = conn["extra"] if isinstance(conn["extra"], dict) else json.loads(conn["extra"])
    fmt = serialization.PublicFormat.OpenSSH
    extra["host_key"] = (
        Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.OpenSSH, fmt)
    )
    extra["host_key"] = extra["host_key"].decode()
    conn["extra"] = extra
    monkeypatch.setenv(conn_env_var("edgeops_device_itest_badkey"), json.dumps(conn))
    client = DeviceClient("itest_badkey", connect_attempts=1)
    with pytest.raises(DeviceError, match="host key mismatch"):
        client.connect()
    assert client.client is None


@pytest.mark.parametrize(
    "change", [{"host_key": None}, {"no_host_key_check": True}, {"allow_host_key_change": True}]
)
def test_unpinned_connection_is_refused(
    stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]
) -> None:
    dev = stack["devices"][0]
    conn = json.loads(json.dumps(stack["connections"][dev["conn_id"]]))
    extra = conn["extra"] if isinstance(conn["extra"], dict) else json.loads(conn["extra"])
    conn["extra"] = {k: v for k, v in {**extra, **change}.items() if v is not None}
    monkeypatch.setenv(conn_env_var("edgeops_device_itest_unpinned"), json.dumps(conn))
    with pytest.raises(DeviceError, match="host_key|host keys are pinned"):
        DeviceClient("itest_unpinned")


def test_password_connection_is_refused(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    dev = stack["devices"][0]
    conn = {**stack["connections"][dev["conn_id"]], "password": "hunter2"}
    monkeypatch.setenv(conn_env_var("edgeops_device_itest_pw"), json.dumps(conn))
    with pytest.raises(DeviceError, match="key auth only"):
        DeviceClient("itest_pw")


def test_unreachable_device_is_one_clear_error(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    dev = stack["devices"][0]
    conn = {**stack["connections"][dev["conn_id"]], "port": 1}  # nothing listens on port 1
    monkeypatch.setenv(conn_env_var("edgeops_device_itest_down"), json.dumps(conn))
    with pytest.raises(DeviceError, match="cannot connect after 1 attempt.*is the device up"):
        DeviceClient("itest_down", connect_attempts=1).connect()
