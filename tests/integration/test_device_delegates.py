"""A group's runtime (threads, delegate) on a real sshd device from the dev stack: the benchmark records the
delegate that ran; a delegate that does not load fails the benchmark, and the deploy's smoke test in staging,
with one clear fatal error, so ``current`` never switches to a release the group's runtime cannot run."""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Iterator
from pathlib import Path
from shlex import quote
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient

from tasks.core.exceptions import DelegateError, FatalError
from tasks.device.runtime import RuntimeOptions
from tests.helpers import conn_env_var, null_delegate_library, tiny_tflite_release

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "tasks" / "device" / "bench.py"
BENCH_CFG = {"warmup": 1, "runs": 100, "threads": 1}


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {**tiny_tflite_release(tmp_path_factory.mktemp("payload"), samples=16), "bench.py": BENCH}


@pytest.fixture(scope="module")
def device(stack_env: dict[str, Any], payload: dict[str, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A connected device with a baseline release ``current`` and a dir holding the test's delegate files:
    libnull.so (a real delegate that claims nothing), libfake_text.so and libfake_exe.so (not delegates)."""
    dev_env = stack_env["devices"][-1]  # the last device: the deploy tests use the first
    tag, local = uuid.uuid4().hex[:8], tmp_path_factory.mktemp("libs")
    (local / "libfake_text.so").write_text("not a shared library\n")
    (local / "libfake_exe.so").write_bytes(Path("/bin/true").read_bytes())  # an executable, not a library
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(conn_env_var(dev_env["conn_id"]), json.dumps(stack_env["connections"][dev_env["conn_id"]]))
        with DeviceClient(dev_env["conn_id"].removeprefix("edgeops_device_")) as dev:
            root = quote(dev.root)
            before = dev.run(f"readlink {root}/current", check=False)[1].strip()
            libs = posixpath.join(dev.root, f"itest-delegates-{tag}")
            try:
                dev.run(f"mkdir -p {quote(libs)}")
                dev.put_files(libs, {"libnull.so": null_delegate_library(local),
                                     "libfake_text.so": local / "libfake_text.so",
                                     "libfake_exe.so": local / "libfake_exe.so"}, {}, 60)
                dev.provision()
                base = f"itest-{tag}-base"
                dev.deploy(base, payload, "int8")
                yield {"dev": dev, "tag": tag, "libs": libs, "base": base}
            finally:
                restore = (f"ln -sfn {quote(before)} {root}/current.tmp && mv -T {root}/current.tmp {root}/current"
                           if before else f"rm -f {root}/current")
                dev.run(f"{restore}; rm -rf {root}/releases/itest-{tag}-* {quote(libs)}", check=False)


def test_default_benchmark_records_xnnpack_and_threads(device: dict[str, Any]) -> None:
    doc = device["dev"].benchmark(device["base"], ["fp32", "int8"], BENCH_CFG, "host").document
    assert doc["delegate"] == {"name": "xnnpack", "builtin": True} and doc["threads"] == 1
    for result in doc["results"].values():
        assert result["threads"] == 1 and result["delegate"]["name"] == "xnnpack"
        assert result["delegate"]["partitions"] >= 1


@pytest.mark.parametrize(("library", "why"), [
    ("/nonexistent/libfoo.so", "cannot open shared object file: No such file or directory"),
    ("libfake_text.so", "OSError"),
    ("libfake_exe.so", "cannot dynamically load position-independent executable"),
])
def test_a_delegate_that_does_not_load_fails_the_benchmark(device: dict[str, Any], library: str, why: str) -> None:
    path = library if library.startswith("/") else posixpath.join(device["libs"], library)
    with pytest.raises(DelegateError) as err:
        device["dev"].benchmark(device["base"], ["int8"], BENCH_CFG, "host", RuntimeOptions(1, path))
    message = str(err.value)
    assert f"benchmark of release {device['base']} failed: delegate {path} failed to load" in message
    assert why in message and "no CPU fallback" in message
    assert isinstance(err.value, FatalError)  # a retry cannot install a library: the task is not retried


def test_a_failing_delegate_stops_the_deploy_in_staging(device: dict[str, Any], payload: dict[str, Path]) -> None:
    dev: DeviceClient = device["dev"]
    release, runtime = f"itest-{device['tag']}-bad", RuntimeOptions(1, "/nonexistent/libfoo.so")
    with pytest.raises(DelegateError, match="smoke test in staging failed: delegate /nonexistent/libfoo.so failed "
                                            "to load"):
        dev.deploy(release, payload, "int8", runtime)
    assert dev.current_release() == device["base"]  # never switched
    root = quote(dev.root)
    assert dev.run(f"test -e {root}/releases/{release}", check=False)[0] != 0
    assert dev.run(f"ls -A {root}/.staging 2>/dev/null", check=False)[1].strip() == ""  # staging removed


def test_an_external_delegate_runs_the_deploy_and_the_benchmark(device: dict[str, Any],
                                                               payload: dict[str, Path]) -> None:
    dev: DeviceClient = device["dev"]
    release = f"itest-{device['tag']}-null"
    runtime = RuntimeOptions(2, posixpath.join(device["libs"], "libnull.so"), {"mode": "test"})
    assert dev.deploy(release, payload, "fp32", runtime).release == release
    assert dev.current_release() == release
    doc = dev.benchmark(release, ["fp32", "int8"], BENCH_CFG, "host", runtime).document
    assert doc["threads"] == 2 and doc["delegate"]["path"] == runtime.delegate
    for result in doc["results"].values():
        delegate = result["delegate"]
        assert (delegate["name"], delegate["options"], result["threads"]) == ("libnull.so", {"mode": "test"}, 2)
        assert delegate["partitions"] == 0 and delegate["fallback_partitions"] == 1  # it claimed no op
