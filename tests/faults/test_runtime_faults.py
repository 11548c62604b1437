"""Provisioning faults: killed half-way (the venv without its ready marker is rebuilt), and a lock whose hash
does not match the wheel PyPI serves (one DeviceError with pip's reason; the working runtime and ``current``
are untouched)."""

from __future__ import annotations

import hashlib
import os
import platform
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient
from edgeops_airflow.device_runtime import DeviceRuntime

from tasks.core.config import DeployConfig
from tasks.core.exceptions import DeviceError
from tasks.device.runtime import READY_MARKER, runtime_key, runtime_lock
from tasks.device.runtime_lock import RuntimeLock, canonical, parse
from tests.faults.conftest import device_state


def _pids_under(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (a dir only this test uses) and run pip."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in cmd and " pip " in f" {cmd} ":
                found.append(int(entry.name))
    return found


def test_provisioning_killed_midway_is_rebuilt(device_factory: Any, env_conns: Any, work: Path,
                                               figures: Any) -> None:
    dev, _ = device_factory()
    runtime_root = work / f"rt-{uuid.uuid4().hex[:6]}"
    name = env_conns(f"edgeops_device_{dev.name}rt", dev.connection(runtime_root=str(runtime_root)))
    errors: list[Exception] = []

    def provision() -> None:
        try:
            with DeviceClient(name) as client:
                client.provision()
        except DeviceError as exc:
            errors.append(exc)

    thread = threading.Thread(target=provision)
    thread.start()
    deadline, killed = time.monotonic() + 120, []
    while not killed and time.monotonic() < deadline and thread.is_alive():
        for pid in _pids_under(runtime_root):
            os.kill(pid, signal.SIGKILL)  # processes of this test's own provisioning, by id
            killed.append(pid)
        time.sleep(0.05)
    thread.join(timeout=300)
    venv = runtime_root / runtime_key()
    half_built = venv.is_dir() and not (venv / READY_MARKER).exists()
    assert killed and errors and "stopped with exit" in str(errors[0]) and half_built
    with DeviceClient(name) as client:
        again = client.provision()
        assert again.installed is True and (venv / READY_MARKER).exists()
        assert client.provision().installed is False
    figures("provisioning killed mid-pip, then rebuilt", 1, 1, 0, "marker written last")


def _tampered(package: str) -> tuple[RuntimeLock, str]:
    """The committed lock with ``package``'s hash for this host's arch replaced: (lock, the forged sha256)."""
    good = runtime_lock()
    pkg = next(p for p in good.packages if canonical(p.name) == package)
    wheel = next(w for w in pkg.wheels if w.arch == platform.machine())
    forged = hashlib.sha256(f"not {wheel.filename}".encode()).hexdigest()
    return parse(good.text.replace(wheel.sha256, forged)), forged


def test_a_tampered_lock_hash_fails_with_pips_reason(provisioned: Any, payload: dict[str, Path], runtime_root: Path,
                                                     figures: Any) -> None:
    """numpy's hash in the lock is not the wheel's: pip refuses it, the error says so, nothing working is touched."""
    dev, name = provisioned
    tampered, forged = _tampered("numpy")
    with DeviceClient(name) as client:
        client.deploy(f"lock-{uuid.uuid4().hex[:8]}", payload, "fp32")
        before = device_state(dev.root)
        started = time.monotonic()
        with pytest.raises(DeviceError) as err:
            DeviceRuntime(client, DeployConfig(), tampered).provision()
        took = time.monotonic() - started
        after = device_state(dev.root)
        again = client.provision()
    reason = str(err.value)
    assert "DO NOT MATCH THE HASHES" in reason and "numpy" in reason and forged in reason and "Got" in reason
    assert "hash-locked runtime runtime.lock" in reason and tampered.key in reason
    assert before[0] is not None and after == before and after[1]  # same current, still passes sha256sum -c
    assert again.installed is False and again.venv.endswith(runtime_key())  # the working runtime, untouched
    assert not (runtime_root / tampered.key / READY_MARKER).exists()
    figures("runtime lock with a tampered wheel hash: pip refuses", 1, 1, 0,
            f"DeviceError with pip's reason in {took:.0f}s; current + runtime kept")
