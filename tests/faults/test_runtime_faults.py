"""Provisioning killed half-way: the venv without its ready marker is detected and rebuilt."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from edgeops_airflow.device import DeviceClient

from tasks.core.exceptions import DeviceError
from tasks.device.runtime import READY_MARKER, runtime_key


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
