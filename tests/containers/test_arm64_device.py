"""The emulated arm64 Raspberry Pi (config device ``pi_arm64``: Debian bookworm arm64 under qemu in Docker).

Needs the container device up:  .venv/bin/python -m scripts.devstack up --no-airflow --with-containers
(the image comes from scripts/images/pi_arm64.sh, the engine from scripts/engine.sh). Skipped when the device
is not up, unless the run selects this marker (``-m containers``), where that is a failure.

Everything goes through the project's own DeviceClient with the pinned host key, as the DAG does. Timings
under qemu are labelled ``emulated`` and say nothing about a real Pi.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from shlex import quote
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient, label_for

from tasks.core.exceptions import DeviceError
from tests.conftest import ENV_FILE, STACK_FILE
from tests.helpers import conn_env_var

pytestmark = pytest.mark.containers
log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tasks" / "device" / "bench.py"
DEVICE = "pi_arm64"  # not "pi-arm64": AIRFLOW_CONN_EDGEOPS_DEVICE_PI-ARM64 cannot be exported by a shell
UP = ".venv/bin/python -m scripts.devstack up --no-airflow --with-containers"
MODES = ("fp32", "fp16", "dynamic", "int8")


@pytest.fixture(scope="module")
def arm(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The pi_arm64 entry of env.json, with its connection exported the way Airflow reads env connections."""
    env_file = ENV_FILE
    doc = json.loads(env_file.read_text()) if env_file.exists() else {"devices": [], "connections": {}}
    dev = next((d for d in doc["devices"] if d["name"] == DEVICE), None)
    if dev is None:
        expr = request.config.getoption("markexpr") or ""
        why = f"device {DEVICE} is not up (not in {env_file}); run: {UP}"
        if "containers" in expr and "not containers" not in expr:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(conn_env_var(dev["conn_id"]), json.dumps(doc["connections"][dev["conn_id"]]))
        yield {"dev": dev, "conn": doc["connections"][dev["conn_id"]]}


@pytest.fixture(scope="module")
def client(arm: dict[str, Any]) -> Iterator[DeviceClient]:
    with DeviceClient(DEVICE) as dev:
        yield dev


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four variants of the tests' tiny model (converted by TF on this host), its sample and bench.py."""
    from tasks.core.modes import converter_settings
    from tasks.ml.convert import convert
    from tests.helpers import tiny_tflite_release

    tmp = tmp_path_factory.mktemp("arm64")
    files = tiny_tflite_release(tmp, samples=16)  # fp32, int8 (full integer), sample.npz; SavedModel in tmp/saved
    for mode in ("fp16", "dynamic"):
        (tmp / f"{mode}.tflite").write_bytes(convert(tmp / "saved", converter_settings(mode)))
        files[f"{mode}.tflite"] = tmp / f"{mode}.tflite"
    return {**files, "bench.py": BENCH}


@pytest.fixture(scope="module")
def provisioned(client: DeviceClient) -> tuple[dict[str, Any], dict[str, Any], float]:
    start = time.monotonic()
    first = client.provision()
    took = time.monotonic() - start
    second = client.provision()
    log.warning("pi_arm64 provision: %.1fs (installed=%s) %s", took, first.installed, first.packages)
    return first, second, took


@pytest.fixture(scope="module")
def release(client: DeviceClient, provisioned: Any, payload: dict[str, Path]) -> Iterator[dict[str, Any]]:
    run_id = f"ctest-{uuid.uuid4().hex[:8]}"
    root = quote(client.root)
    before = client.run(f"readlink {root}/current", check=False)[1].strip()
    try:
        yield {"run_id": run_id, "deployed": client.deploy(run_id, payload, "int8")}
    finally:
        restore = (
            f"ln -sfn {quote(before)} {root}/current.tmp && mv -T {root}/current.tmp {root}/current"
            if before
            else f"rm -f {root}/current"
        )
        client.run(f"{restore}; rm -rf {root}/releases/{quote(run_id)}", check=False)


def test_connection_is_pinned_and_labelled_emulated(arm: dict[str, Any], client: DeviceClient) -> None:
    extra = arm["conn"]["extra"]
    assert extra["kind"] == "qemu" and client.kind == "qemu" and label_for(client.kind) == "emulated"
    assert extra["host_key"] == arm["dev"]["host_key"] and extra["no_host_key_check"] is False
    configured = next(d for d in json.loads(STACK_FILE.read_text())["devices"] if d["name"] == DEVICE)
    assert arm["dev"]["arch"] == "arm64" and arm["dev"]["port"] == configured["port"]


def test_facts_say_aarch64(client: DeviceClient) -> None:
    facts = client.facts()
    assert facts.arch == "aarch64"
    assert "bookworm" in facts.os and facts.python.startswith("3.11")


def test_wrong_host_key_is_refused(arm: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    conn = {**arm["conn"], "extra": {**arm["conn"]["extra"], "host_key": other.decode()}}
    monkeypatch.setenv(conn_env_var("edgeops_device_ctest_badkey"), json.dumps(conn))
    with pytest.raises(DeviceError, match="host key mismatch"):
        DeviceClient("ctest_badkey", connect_attempts=1).connect()


def test_provision_installs_litert_once(provisioned: tuple[dict[str, Any], dict[str, Any], float]) -> None:
    first, second, _ = provisioned
    assert "numpy" in first.packages and "ai-edge-litert" in first.packages
    assert second.installed is False and second.packages == first.packages


def test_release_is_on_the_device_and_visible_from_the_host(
    arm: dict[str, Any], client: DeviceClient, release: dict[str, Any], payload: dict[str, Path]
) -> None:
    run_id = release["run_id"]
    assert release["deployed"].current_variant == "int8"
    assert client.run(f"readlink {quote(client.root)}/current")[1].strip() == f"releases/{run_id}"
    client.run(f"cd {quote(client.root)}/releases/{run_id} && sha256sum -c --quiet SHA256SUMS")
    host_root = Path(arm["dev"]["deploy_root"])  # bind-mounted at the same path inside the container
    assert os.path.realpath(host_root / "current") == str(host_root / "releases" / run_id)
    assert {p.name for p in (host_root / "current").iterdir()} >= set(payload)


def test_benchmark_is_emulated_aarch64(client: DeviceClient, release: dict[str, Any]) -> None:
    start = time.monotonic()
    doc = client.benchmark(release["run_id"], list(MODES), {"warmup": 2, "runs": 100, "threads": 2},
                           "emulated").document
    log.warning("pi_arm64 benchmark of %s: %.1fs", ",".join(MODES), time.monotonic() - start)
    assert doc["label"] == "emulated" and doc["device"]["arch"] == "aarch64"
    assert doc["device"]["litert"]["package"] == "ai-edge-litert"
    assert set(doc["results"]) == set(MODES)
    ran = {m: r for m, r in doc["results"].items() if "error" not in r}
    failed = {m: r["error"] for m, r in doc["results"].items() if "error" in r}
    log.warning("pi_arm64 LiteRT %s: ran %s, failed %s", doc["device"]["litert"]["version"], sorted(ran), failed)
    assert {"fp32", "int8"} <= set(ran), failed  # the baseline and full-int8 ops exist in every LiteRT
    for r in ran.values():
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and 0.0 <= r["accuracy"] <= 1.0
    assert ran["fp32"]["accuracy"] == 1.0  # the sample is labelled by the Keras model itself


# --- edgeops-serve on the emulated Pi: serve, hot swap under load, collect ------------------------------------
@pytest.fixture(scope="module")
def served(client: DeviceClient, provisioned: Any, payload: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """Release A deployed with the default app hooks: the deploy provisions and starts edgeops-serve (aarch64
    LiteRT under qemu). The service is stopped and ``current`` put back at the end."""
    from tasks.device.app import AppHooks
    from tasks.device.runtime import RuntimeOptions
    from tests.integration.test_device_deploy import _restore_current

    tag, hooks = uuid.uuid4().hex[:8], AppHooks(http_port=0, health_timeout_s=120)
    before = client.run(f"readlink {quote(client.root)}/current", check=False)[1].strip()
    run_a = f"ctest-serve-{tag}-a"
    try:
        deployed = client.deploy(run_a, payload, "int8", RuntimeOptions(threads=1), app=hooks)
        yield {"tag": tag, "a": run_a, "hooks": hooks, "deployed": deployed}
    finally:
        _stop_service(client)
        _restore_current(client, before, f"ctest-serve-{tag}-*")


def _stop_service(client: DeviceClient) -> None:
    from tasks.device.app import restart_cmd

    client.run(restart_cmd(client.root), timeout=60, check=False)  # SIGTERM: open telemetry hours become final


def test_serve_the_release_on_the_emulated_pi(client: DeviceClient, served: dict[str, Any]) -> None:
    from tests.device_load import healthz

    assert served["deployed"].app_failure == ""
    health = healthz(client)
    assert health["ready"] and health["release"] == served["a"]


def test_hot_swap_under_load_on_the_emulated_pi(client: DeviceClient, served: dict[str, Any],
                                                payload: dict[str, Path]) -> None:
    from tasks.device.runtime import RuntimeOptions
    from tests.device_load import healthz, load_on

    run_b = f"ctest-serve-{served['tag']}-b"
    with load_on(DEVICE, "--body", "frames", timeout=660) as doc:
        dep_b = client.deploy(run_b, payload, "fp32", RuntimeOptions(threads=1), app=served["hooks"])
        time.sleep(2)
    log.warning("pi_arm64 hot swap under load: %d served, %d failed, by release %s", doc["ok"], doc["n_failed"],
                doc["releases"])
    assert dep_b.app_failure == ""
    assert doc["n_failed"] == 0, doc["failed"]
    assert doc["releases"].get(served["a"], 0) > 0 and doc["releases"].get(run_b, 0) > 0, doc
    assert healthz(client)["release"] == run_b
    served["b"], served["load"] = run_b, doc


def test_collect_from_the_emulated_pi(client: DeviceClient, served: dict[str, Any], artifact_store: Any,
                                      stack_env: dict[str, Any]) -> None:
    from tasks.core import keys
    from tasks.core.storage import ArtifactStore
    from tasks.device.transport import EnvTransport
    from tasks.fleet.collect import collect_device

    assert "b" in served, "the hot swap test did not run"
    _stop_service(client)
    bucket = stack_env["s3"]["datasets_bucket"]
    prefix = f"ctest-arm64-{served['tag']}"
    with EnvTransport(DEVICE, f"edgeops_device_{DEVICE}") as transport:
        record = collect_device(transport, artifact_store, dataset=f"s3://{bucket}/{prefix}")
    log.warning("pi_arm64 collect: %s", record.summary())
    assert record.ok and record.telemetry >= 2 and record.samples >= 1, record.summary()
    for release in (served["a"], served["b"]):
        docs = [artifact_store.get_json(o["Key"]) for o in artifact_store.list(keys.telemetry(DEVICE, release, ""))]
        assert docs and sum(d["requests"] for d in docs) >= served["load"]["releases"][release], docs
    datasets = ArtifactStore(artifact_store.client, bucket)
    assert list(datasets.list(keys.incoming_sample(prefix, DEVICE, served["b"], "")))
