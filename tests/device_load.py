"""Drive edgeops-serve ON a device over its SSH connection: the load generator (tests/load_generator.py) while a
block runs, and ``/healthz``. Used by the integration tests on the sshd stand-ins and the emulated arm64 Pi."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from shlex import quote
from typing import Any

from edgeops_airflow.device import DeviceClient

from tasks.device import layout

LOAD = (Path(__file__).with_name("load_generator.py")).read_text()

_GET = r"""
import http.client, json, socket, sys
ep = json.load(open(sys.argv[1] + "/endpoint.json"))
class U(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.settimeout(5); self.sock.connect(ep["socket"])
c = U("localhost"); c.request("GET", "/healthz"); print(c.getresponse().read().decode())
"""


def healthz(dev: DeviceClient) -> dict[str, Any]:
    """edgeops-serve's ``/healthz`` on the device, asked over its Unix socket."""
    data = layout.serve_data(dev.root)
    return json.loads(dev.run(f"{quote(dev.venv_python)} -c {quote(_GET)} {quote(data)}")[1])


def run_load(dev: DeviceClient, *args: str, timeout: float = 300, system_python: bool = False) -> dict[str, Any]:
    """One load run to its end (``--max``/``--seconds`` in ``args``); its counts. It runs on the runtime's python,
    or with ``system_python`` on the device's own (before a deploy provisioned the runtime; no numpy there)."""
    python = dev.python if system_python else dev.venv_python
    command = " ".join([quote(python), "-c", quote(LOAD), quote(layout.serve_data(dev.root)), *map(quote, args)])
    return json.loads(dev.run(command, timeout=timeout)[1].strip().splitlines()[-1])


@contextmanager
def load_on(device: str, *args: str, wait_running: bool = True, timeout: float = 960,
            system_python: bool = False) -> Generator[dict[str, Any], None, None]:
    """The load generator runs on ``device`` (its own SSH connection, in a thread) for as long as the block runs.

    With ``wait_running`` the block starts once the service answered a first request. When the block ends the
    load stops, and the yielded dict holds its counts (see tests/load_generator.py).
    """
    out: dict[str, Any] = {}
    with DeviceClient(device) as dev:
        data = quote(layout.serve_data(dev.root))
        dev.run(f"mkdir -p {data} && rm -f {data}/.load-stop {data}/.load-running")

        def run() -> None:
            with DeviceClient(device) as load_dev:
                out.update(run_load(load_dev, "--seconds", str(timeout - 60), *args, timeout=timeout,
                                    system_python=system_python))

        thread = threading.Thread(target=run, daemon=True, name=f"load-{device}")
        thread.start()
        deadline = time.monotonic() + 120  # an emulated Pi starts python + numpy in ~20 s
        while wait_running and dev.run(f"test -e {data}/.load-running", check=False)[0] != 0:
            assert thread.is_alive() and time.monotonic() < deadline, f"{device}: the load got no answer in 120 s"
            time.sleep(0.5)
        try:
            yield out
        finally:
            dev.run(f"touch {data}/.load-stop")
            thread.join(timeout=120)
            dev.run(f"rm -f {data}/.load-stop {data}/.load-running")
    assert out, f"{device}: the load generator printed no counts"
