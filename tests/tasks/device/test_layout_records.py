"""The device layout's one home, the deploy protocol's exit codes, what the device operations hand back, and the
CLI's connection from the environment (checked before any network I/O)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.exceptions import DeviceError
from tasks.device import layout
from tasks.device.layout import DeployExit
from tasks.device.records import OnDevice, listing_command, parse_listing
from tasks.device.transport import EnvTransport

ROOT = Path(__file__).resolve().parents[3]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImGrZRi+vNBRfjq+hztyptwRN3aiv/GwL4XRpBU0Wwb"


def test_exit_codes_and_paths() -> None:
    assert [int(c) for c in DeployExit] == [10, 11, 12, 13, 14]
    assert layout.release_path("/srv/e", "r1.int8") == "/srv/e/releases/r1.int8"
    assert layout.release_link("r1") == "releases/r1" and layout.variant_file("int8") == "int8.tflite"


def test_listing_round_trip() -> None:
    assert "/srv/e/current" in listing_command("/srv/e") and "/srv/e/releases" in listing_command("/srv/e")
    assert parse_listing("releases/b.int8\n---\nb.int8\na.fp32\n") == OnDevice("b.int8", ("b.int8", "a.fp32"))
    assert parse_listing("---\n") == OnDevice(None, ())


def test_env_transport_reads_the_json_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "ssh", "host": "192.0.2.1", "port": 2222, "login": "pi",
            "extra": {"key_file": "/nonexistent/id", "host_key": KEY, "deploy_root": "/srv/e"}}
    monkeypatch.setenv("AIRFLOW_CONN_MY_GARAGE_PI", json.dumps(conn))
    t = EnvTransport("pi2", "my_garage_pi")
    assert (t.conn_id, t.host, t.port, t.root, t.client) == ("my_garage_pi", "192.0.2.1", 2222, "/srv/e", None)
    with pytest.raises(DeviceError, match="AIRFLOW_CONN_EDGEOPS_DEVICE_PI2 is not set"):
        EnvTransport("pi2")
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", "ssh://pi@host")
    with pytest.raises(DeviceError, match="not an Airflow JSON connection"):
        EnvTransport("pi2", "broken")


def test_tasks_never_imports_airflow_or_plugins() -> None:
    """Importing the fleet CLI and the device modules loads neither Airflow nor the plugin package."""
    code = ("import sys, tasks.fleet.cli, tasks.fleet.status, tasks.fleet.rollout, tasks.device.transport; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'edgeops_airflow')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
