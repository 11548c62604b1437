"""Activation and app health on a real sshd device (issue 16, deploy step 7): a failing ``health`` and a release
edgeops-serve refuses are switched back and the previous release is served again; a service killed between
deploys is started again by the next deploy. The service is the real edgeops-serve process the deploy starts."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any

from edgeops_airflow.device import DeviceClient

from tasks.device import layout
from tasks.device.app import AppHooks
from tasks.device.runtime import RuntimeOptions
from tests.faults.conftest import device_state
from tests.serve_helpers import Client

HOOKS = AppHooks(http_port=0, health_timeout_s=60)  # a restarted service loads LiteRT first: margin for busy cores
SICK = AppHooks(http_port=0, health="false")
RUNTIME = RuntimeOptions(threads=1)


def _serving(root: Path) -> tuple[int, str | None]:
    """(pid, release /healthz reports) of the device's edgeops-serve (its root is on this host)."""
    endpoint = json.loads((root / layout.SERVE_DATA / layout.ENDPOINT).read_text())
    client = Client(path=endpoint["socket"])
    try:
        return endpoint["pid"], client.health()[1]["release"]
    finally:
        client.close()


def test_failing_health_switches_back_and_a_killed_service_is_restarted(
        device_factory: Any, provisioned: Any, payload: dict[str, Path], figures: Any, tmp_path: Path) -> None:
    dev, name = device_factory()
    root, tag = dev.root, uuid.uuid4().hex[:6]
    (tmp_path / "labels.json").write_text(json.dumps({"not": "a list"}))
    reps, back_health, back_refused, restarted = 3, 0, 0, 0
    with DeviceClient(name) as client:
        try:
            good = f"good-{tag}"
            assert client.deploy(good, payload, "int8", RUNTIME, app=HOOKS).app_failure == ""
            for i in range(reps):
                r = client.deploy(f"sick-{tag}-{i}", payload, "int8", RUNTIME, app=SICK)
                back_health += (r.app_failure.startswith("health: `false` exited 1")
                                and device_state(root)[:2] == (good, True) and _serving(root)[1] == good)
                r = client.deploy(f"refused-{tag}-{i}", {**payload, "labels.json": tmp_path / "labels.json"}, "int8",
                                  RUNTIME, app=HOOKS)
                back_refused += (r.app_failure.startswith(f"health: edgeops-serve refused refused-{tag}-{i}")
                                 and device_state(root)[:2] == (good, True) and _serving(root)[1] == good)
                pid = _serving(root)[0]
                os.kill(pid, signal.SIGKILL)  # the fault: the service dies between deploys
                nxt = f"next-{tag}-{i}"
                r = client.deploy(nxt, payload, "fp32", RUNTIME, app=HOOKS)
                new_pid, serves = _serving(root)
                restarted += r.app_failure == "" and new_pid != pid and serves == nxt
                good = nxt
        finally:
            try:
                os.kill(_serving(root)[0], signal.SIGTERM)
            except (OSError, ValueError, KeyError):
                pass
    figures("failing health command: switched back, previous served", reps, back_health, 0, "step named in result")
    figures("release refused by edgeops-serve: switched back", reps, back_refused, 0, "labels.json not a list")
    figures("edgeops-serve killed between deploys: restarted", reps, restarted, 0, "setsid nohup, new pid")
    assert (back_health, back_refused, restarted) == (reps, reps, reps)
