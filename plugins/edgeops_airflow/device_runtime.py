"""The device runtime: facts about the device and the pinned LiteRT venv every release runs with.

The venv lives in ``<runtime_root>/<runtime_key>/`` (a new pin set gets a new directory beside the old one)
and is built under ``<runtime_root>/.lock``. Its ready marker is written last: a venv whose build was killed
half-way has no marker and is removed and rebuilt by the next provisioning.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
from shlex import quote

from edgeops_airflow.device_transport import DeviceTransport
from tasks.core.config import DeployConfig
from tasks.core.exceptions import DeviceError, RecordError
from tasks.device.records import DeviceFacts, Provisioned
from tasks.device.runtime import FALLBACK_PACKAGES, READY_MARKER, RUNTIME_PACKAGES, runtime_key

log = logging.getLogger(__name__)

_CHECK_RUNTIME = (
    "import importlib.metadata as m, json, numpy\n"
    "try:\n    import ai_edge_litert.interpreter; pkg = 'ai-edge-litert'\n"
    "except ImportError:\n    import tflite_runtime.interpreter; pkg = 'tflite-runtime'\n"
    "print(json.dumps({'numpy': m.version('numpy'), pkg: m.version(pkg)}))"
)
_FACTS = (
    "import json, os, platform\n"
    "osr = dict(l.split('=', 1) for l in open('/etc/os-release').read().split(chr(10)) if '=' in l)\n"
    "print(json.dumps({'arch': platform.machine(), 'kernel': platform.release(), 'cpus': os.cpu_count(),\n"
    "  'os': osr.get('PRETTY_NAME', '').strip(chr(34)), 'python': platform.python_version()}))"
)


class DeviceRuntime:
    """Facts and provisioning over one connected ``DeviceTransport``; timeouts come from ``DeployConfig``."""

    def __init__(self, transport: DeviceTransport, deploy: DeployConfig) -> None:
        self.t, self.cfg = transport, deploy
        self.runtime_dir = posixpath.join(transport.runtime_root, runtime_key())
        self.venv_python = posixpath.join(self.runtime_dir, "bin", "python")

    def _run(self, command: str, what: str, check: bool = True) -> tuple[int, str]:
        rc, out, _ = self.t.run(command, self.cfg.command_timeout_s, check=check, what=what)
        return rc, out

    def facts(self) -> DeviceFacts:
        """arch, kernel, os, python, cpus of the device (through its system python)."""
        if self._run(f"test -x {quote(self.t.python)}", "python check", check=False)[0] != 0:
            raise DeviceError(f"{self.t.who}: {self.t.python} is missing; install python3 or set extra.python")
        raw = self.t.json(f"{quote(self.t.python)} -c {quote(_FACTS)}", "facts", self.cfg.command_timeout_s)
        try:
            return DeviceFacts.from_xcom(raw)
        except RecordError as exc:
            raise DeviceError(f"{self.t.who}: the facts script printed an unexpected document: {exc}") from exc

    def provision(self) -> Provisioned:
        """Make the pinned runtime venv; a no-op when its ready marker is there and it imports.

        The marker is written last, so a venv killed half-way (no marker) is removed and rebuilt.
        """
        venv, marker = quote(self.runtime_dir), quote(posixpath.join(self.runtime_dir, READY_MARKER))
        check = f"test -f {marker} && {quote(self.venv_python)} -c {quote(_CHECK_RUNTIME)}"
        with self.t.locked(self.t.runtime_root, self.cfg.lock_timeout_s):
            rc, out = self._run(check, "runtime check", check=False)
            if rc == 0:
                return Provisioned(installed=False, venv=self.runtime_dir, packages=json.loads(out.splitlines()[-1]))
            log.info("%s: building runtime %s: %s", self.t.who, self.runtime_dir, " ".join(RUNTIME_PACKAGES))
            self._run(f"rm -rf {venv} && {quote(self.t.python)} -m venv {venv}", "venv creation (needs python3-venv)")
            started, budget = time.monotonic(), self.cfg.provision_timeout_s
            installed = RUNTIME_PACKAGES
            pip = (f"{quote(self.venv_python)} -m pip install --disable-pip-version-check --no-input "
                   "--progress-bar off --only-binary=:all:")
            rc, _, _ = self.t.run(f"{pip} {' '.join(map(quote, installed))}", budget, False, True, "pip install")
            if rc not in (0, 1):  # 1 = pip's own error (no wheel for this arch/python); else killed or timed out
                raise DeviceError(f"{self.t.who}: pip install into {self.runtime_dir} stopped with exit {rc} "
                                  f"(killed, or longer than deploy.provision_timeout_s={budget}s); the next "
                                  "deploy rebuilds the venv")
            if rc == 1:
                log.warning("%s: the pinned ai-edge-litert set did not install; trying tflite-runtime", self.t.who)
                installed, left = FALLBACK_PACKAGES, max(10.0, budget - (time.monotonic() - started))
                self.t.run(f"{pip} {' '.join(map(quote, installed))}", left, log_stdout=True,
                           what="pip install of the pinned runtime (no wheel for this arch/python? PyPI reachable?)")
            packages = self.t.json(f"{quote(self.venv_python)} -c {quote(_CHECK_RUNTIME)}", "runtime check",
                                   self.cfg.command_timeout_s)
            spec = quote("\n".join(installed) + "\n")
            self._run(f"printf %s {spec} > {marker}.tmp && sync && mv {marker}.tmp {marker} && sync",
                      "writing the runtime marker")
        return Provisioned(installed=True, venv=self.runtime_dir, packages=packages)
