"""Deploy step 7 on a real sshd device: edgeops-serve started by the deploy, hot-swapped by the next one under
load, and a failing ``health`` switched back, with the failed step in the result (no Airflow needed).

Requests are sent on the device itself (the runtime's python over the service's Unix socket), as a local
application would. The module stops the service it started and puts ``current`` back where it was.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from shlex import quote
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient

from tasks.device import layout
from tasks.device.app import AppHooks
from tasks.device.runtime import RuntimeOptions
from tests.device_load import healthz, load_on
from tests.helpers import conn_env_var, tiny_tflite_release
from tests.integration.test_device_deploy import BENCH, _restore_current

pytestmark = pytest.mark.integration

HOOKS = AppHooks(http_port=0, health_timeout_s=20)  # the stand-ins share one loopback: a free port each
RUNTIME = RuntimeOptions(threads=1)


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {**tiny_tflite_release(tmp_path_factory.mktemp("serve-payload"), samples=8), "bench.py": BENCH}


@pytest.fixture(scope="module")
def device(stack_env: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The first device, with its connection exported the way Airflow reads env connections."""
    if not stack_env.get("devices"):
        pytest.fail("the test stack lists no devices; run: .venv/bin/python -m scripts.devstack up --no-airflow")
    dev = stack_env["devices"][0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(conn_env_var(dev["conn_id"]), json.dumps(stack_env["connections"][dev["conn_id"]]))
        yield dev


@pytest.fixture(scope="module")
def served(device: dict[str, Any], payload: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """Release A deployed with the default hooks: the deploy provisions and starts edgeops-serve."""
    tag = uuid.uuid4().hex[:8]
    name = device["conn_id"].removeprefix("edgeops_device_")
    with DeviceClient(name) as dev:
        before = dev.run(f"readlink {quote(dev.root)}/current", check=False)[1].strip()
        data = quote(layout.serve_data(dev.root))
        try:
            dev.provision()
            run_a = f"itest-serve-{tag}-a"
            yield {"dev": dev, "tag": tag, "a": run_a, "name": name,
                   "dep_a": dev.deploy(run_a, payload, "int8", RUNTIME, app=HOOKS)}
        finally:
            dev.run(f"pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' {data}/endpoint.json); "
                    f"[ -n \"$pid\" ] && kill $pid; rm -f {data}/.load-stop", check=False)
            _restore_current(dev, before, f"itest-serve-{tag}-*")


def test_deploy_starts_the_service_and_healthz_reports_the_release(served: dict[str, Any]) -> None:
    dev = served["dev"]
    assert served["dep_a"].app_failure == ""
    health = healthz(dev)
    assert health["ready"] and health["release"] == served["a"]
    sdir = layout.serve_dir(dev.root)
    listing = dev.run(f"ls {quote(sdir)}; readlink {quote(sdir)}/runtime; cat {quote(sdir)}/serve.env")[1]
    assert all(f in listing for f in layout.SERVE_FILES)
    assert "../runtimes/" in listing and "EDGEOPS_SERVE_ARGS=--threads 1 --http-port 0" in listing


def test_second_deploy_hot_swaps_under_load_without_a_failed_request(served: dict[str, Any],
                                                                      payload: dict[str, Path]) -> None:
    dev = served["dev"]
    pid = healthz(dev)["pid"]
    run_b = f"itest-serve-{served['tag']}-b"
    with load_on(served["name"], "--body", "raw", timeout=180) as doc:
        dep_b = dev.deploy(run_b, payload, "fp32", RUNTIME, app=HOOKS)
        time.sleep(1)
    print(f"hot swap under load: {doc['ok']} requests served, {doc['n_failed']} failed, by release "
          f"{doc['releases']}")
    assert dep_b.app_failure == ""
    assert doc["n_failed"] == 0, doc["failed"]
    assert doc["releases"].get(served["a"], 0) > 0 and doc["releases"].get(run_b, 0) > 0
    health = healthz(dev)
    assert health["release"] == run_b and health["pid"] == pid  # swapped in place: the same process
    served["b"] = run_b


def test_failing_health_command_switches_back_and_names_the_step(served: dict[str, Any],
                                                                 payload: dict[str, Path]) -> None:
    dev = served["dev"]
    good = dev.current_release()
    bad = f"itest-serve-{served['tag']}-c"
    result = dev.deploy(bad, payload, "int8", RUNTIME, app=AppHooks(http_port=0, health="false"))
    assert result.app_failure.startswith("health: `false` exited 1"), result.app_failure
    assert f"switched back to {good}" in result.app_failure
    assert dev.current_release() == good
    assert healthz(dev)["release"] == good


def test_release_the_service_refuses_is_switched_back(served: dict[str, Any], payload: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """Passes the deploy's bench.py smoke test, fails edgeops-serve's (labels.json is not a list)."""
    dev = served["dev"]
    good = dev.current_release()
    (tmp_path / "labels.json").write_text(json.dumps({"not": "a list"}))
    bad = f"itest-serve-{served['tag']}-d"
    result = dev.deploy(bad, {**payload, "labels.json": tmp_path / "labels.json"}, "int8", RUNTIME, app=HOOKS)
    assert result.app_failure.startswith(f"health: edgeops-serve refused {bad}"), result.app_failure
    assert dev.current_release() == good
    assert healthz(dev)["release"] == good
