"""One device, transport and release operations together: the convenient handle for scripts and tests.

The parts live in ``device_transport`` (pinned-key SSH, commands, SFTP, the device lock), ``device_runtime``
(facts, the pinned venv) and ``device_release`` (deploy protocol, rollback, benchmark); the operators in
``device_operators`` use them with the run's typed config. ``DeviceClient`` uses ``DeployConfig()`` defaults
unless given one.

Airflow and paramiko are imported inside functions: DAG files import the operators at parse time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeops_airflow.device_release import DeviceReleases
from edgeops_airflow.device_runtime import DeviceRuntime
from edgeops_airflow.device_transport import DeviceTransport, label_for
from edgeops_airflow.device_trust import ReleaseSigning
from edgeops_airflow.signing import release_trust
from tasks.core.config import BenchConfig, DeployConfig
from tasks.device.app import AppHooks
from tasks.device.records import BenchRun, Deployed, DeviceFacts, Provisioned, Switched
from tasks.device.runtime import RuntimeOptions
from tasks.device.signing import Trust

__all__ = ["DeviceClient", "label_for"]


class DeviceClient(DeviceTransport):
    """``with DeviceClient("pi1") as dev: dev.provision(); dev.deploy(...)``."""

    def __init__(self, device: str, conn_id: str | None = None, connect_attempts: int = 3,
                 deploy: DeployConfig | None = None) -> None:
        super().__init__(device, conn_id, connect_attempts)
        self.runtime = DeviceRuntime(self, deploy or DeployConfig())
        self.releases = DeviceReleases(self, deploy or DeployConfig())
        self.venv_python = self.runtime.venv_python

    def facts(self) -> DeviceFacts:
        return self.runtime.facts()

    def provision(self) -> Provisioned:
        return self.runtime.provision()

    def deploy(self, run_id: str, files: dict[str, str | Path], current_mode: str,
               runtime: RuntimeOptions | None = None, signing: ReleaseSigning | None = None,
               app: AppHooks | None = None) -> Deployed:
        """Deploy, signed with ``signing`` (default: the ``edgeops_signing`` connection's key, run id = release)."""
        signing = signing or ReleaseSigning(release_trust(), run_id)
        return self.releases.deploy(run_id, files, current_mode, runtime, signing, app)

    def rollback(self, to_release: str, runtime: RuntimeOptions | None = None, trust: Trust | None = None,
                 app: AppHooks | None = None) -> Switched:
        return self.releases.rollback(to_release, runtime, trust or release_trust(), app)

    def current_release(self) -> str | None:
        return self.releases.current_release()

    def benchmark(self, run_id: str, modes: list[str], bench: BenchConfig | dict[str, Any],
                  label: str, runtime: RuntimeOptions | None = None) -> BenchRun:
        cfg = bench if isinstance(bench, BenchConfig) else BenchConfig(**bench)
        return self.releases.benchmark(run_id, modes, cfg, label, runtime)
