"""The device runtime: facts about the device and the hash-locked LiteRT venv every release runs with.

The venv lives in ``<runtime_root>/<runtime_key>/`` (the key derives from ``runtime.lock``'s content: a new
lock gets a new directory beside the old one) and is built under ``<runtime_root>/.lock``. Its ready marker is
written last: a venv whose build was killed half-way has no marker and is removed and rebuilt by the next
provisioning.
"""

from __future__ import annotations

import json
import logging
import posixpath
from shlex import quote

from edgeops_airflow.device_transport import DeviceTransport
from tasks.core.config import DeployConfig
from tasks.core.exceptions import DeviceError, RecordError
from tasks.device.records import DeviceFacts, Provisioned
from tasks.device.runtime import READY_MARKER, runtime_lock
from tasks.device.runtime_lock import LOCK_NAME, RELOCK, RuntimeLock

log = logging.getLogger(__name__)

_CHECK_RUNTIME = (
    "import importlib.metadata as m, json, numpy, ai_edge_litert.interpreter\n"
    "print(json.dumps({p: m.version(p) for p in ('numpy', 'ai-edge-litert')}))"
)
_FACTS = (
    "import json, os, platform\n"
    "osr = dict(l.split('=', 1) for l in open('/etc/os-release').read().split(chr(10)) if '=' in l)\n"
    "print(json.dumps({'arch': platform.machine(), 'kernel': platform.release(), 'cpus': os.cpu_count(),\n"
    "  'os': osr.get('PRETTY_NAME', '').strip(chr(34)), 'python': platform.python_version()}))"
)


class DeviceRuntime:
    """Facts and provisioning over one connected ``DeviceTransport``; timeouts come from ``DeployConfig``; the
    runtime is ``lock`` (default: the committed ``tasks/device/runtime.lock``)."""

    def __init__(self, transport: DeviceTransport, deploy: DeployConfig, lock: RuntimeLock | None = None) -> None:
        self.t, self.cfg = transport, deploy
        self.lock = lock or runtime_lock()
        self.runtime_dir = posixpath.join(transport.runtime_root, self.lock.key)
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
        """Make the hash-locked runtime venv; a no-op when its ready marker is there and it imports.

        The lock (``tasks/device/runtime.lock``) is uploaded into the new venv and installed with
        ``--require-hashes --no-deps --only-binary=:all:``: a wheel whose sha256 is not in the lock, a missing
        wheel or an unreachable index is one DeviceError with pip's reason; there is no fallback package set.
        The marker (the lock's text) is written last, so a venv killed half-way (no marker) is removed and rebuilt.
        """
        venv, marker = quote(self.runtime_dir), quote(posixpath.join(self.runtime_dir, READY_MARKER))
        check = f"test -f {marker} && {quote(self.venv_python)} -c {quote(_CHECK_RUNTIME)}"
        with self.t.locked(self.t.runtime_root, self.cfg.lock_timeout_s):
            rc, out = self._run(check, "runtime check", check=False)
            if rc == 0:
                return Provisioned(installed=False, venv=self.runtime_dir, packages=json.loads(out.splitlines()[-1]))
            log.info("%s: building runtime %s from %s: %s", self.t.who, self.runtime_dir, LOCK_NAME,
                     " ".join(p.spec for p in self.lock.packages))
            self._run(f"rm -rf {venv} && {quote(self.t.python)} -m venv {venv}", "venv creation (needs python3-venv)")
            self.t.put_files(self.runtime_dir, {}, {LOCK_NAME: self.lock.text}, self.cfg.command_timeout_s)
            self._install()
            packages = self.t.json(f"{quote(self.venv_python)} -c {quote(_CHECK_RUNTIME)}", "runtime check",
                                   self.cfg.command_timeout_s)
            spec = quote(self.lock.text)
            self._run(f"printf %s {spec} > {marker}.tmp && sync && mv {marker}.tmp {marker} && sync",
                      "writing the runtime marker")
        return Provisioned(installed=True, venv=self.runtime_dir, packages=packages)

    def _install(self) -> None:
        """pip install of the uploaded lock; its failure is a DeviceError ending with the tail of pip's stderr."""
        budget, lock = self.cfg.provision_timeout_s, quote(posixpath.join(self.runtime_dir, LOCK_NAME))
        pip = (f"{quote(self.venv_python)} -m pip install --disable-pip-version-check --no-input --progress-bar off "
               f"--require-hashes --no-deps --only-binary=:all: -r {lock}")
        rc, out, err = self.t.run(pip, budget, False, True, "pip install")
        if rc == 0:
            return
        if rc != 1:  # 1 = pip's own error (hash mismatch, no wheel, index unreachable); else killed or timed out
            raise DeviceError(f"{self.t.who}: pip install into {self.runtime_dir} stopped with exit {rc} "
                              f"(killed, or longer than deploy.provision_timeout_s={budget}s); the next "
                              "deploy rebuilds the venv")
        reason = "\n".join((err.strip() or out.strip()).splitlines()[-12:])
        raise DeviceError(f"{self.t.who}: pip could not install the hash-locked runtime {LOCK_NAME} (key "
                          f"{self.lock.key}) into {self.runtime_dir}:\n{reason}\nA hash mismatch means the wheel "
                          f"is not the one locked (re-lock: {RELOCK}); otherwise check that the device reaches "
                          "the package index and has disk space")
