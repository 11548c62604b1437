"""Device connections are checked before any network I/O; release names are checked before any upload."""

from __future__ import annotations

import json

import pytest
from edgeops_airflow.device_release import safe_name
from edgeops_airflow.device_transport import DeviceTransport, label_for

from tasks.core.exceptions import DeviceError, FatalError, ReleaseConflictError
from tests.helpers import conn_env_var

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImGrZRi+vNBRfjq+hztyptwRN3aiv/GwL4XRpBU0Wwb"


def _conn(**change) -> dict:
    extra = {"key_file": "/nonexistent/id_ed25519", "host_key": KEY, "deploy_root": "/srv/edgeops"}
    conn = {"conn_type": "ssh", "host": "192.0.2.1", "port": 22, "login": "pi", "extra": extra}
    for key, value in change.items():
        target = conn if key in ("password", "host", "login") else extra
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return conn


@pytest.mark.parametrize(
    ("change", "match"),
    [({"password": "hunter2"}, "key auth only"), ({"host_key": None}, "host_key is required"),
     ({"host_key": "ssh-ed25519 !!notbase64"}, "not a valid|not a key type"),
     ({"no_host_key_check": True}, "host keys are pinned"), ({"allow_host_key_change": "true"}, "pinned"),
     ({"key_file": None}, "key auth only"), ({"deploy_root": "relative/root"}, "absolute path"),
     ({"deploy_root": "/srv/../etc"}, "without '..'"), ({"runtime_root": "venvs"}, "runtime_root")],
)
def test_bad_connections_are_refused_offline(monkeypatch: pytest.MonkeyPatch, change: dict, match: str) -> None:
    monkeypatch.setenv(conn_env_var("edgeops_device_unit"), json.dumps(_conn(**change)))
    with pytest.raises(DeviceError, match=match):
        DeviceTransport("unit")


def test_a_good_connection_parses_without_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(conn_env_var("edgeops_device_unit"), json.dumps(_conn(kind="pi")))
    t = DeviceTransport("unit")
    assert t.client is None and t.runtime_root == "/srv/edgeops/runtimes" and label_for(t.kind) == "native"
    assert t._host_key.get_name() == "ssh-ed25519"


@pytest.mark.parametrize("bad", ["-rf", ".partial", "..", "a/b", "a b", "r\n", "", "a:b", "x\x00"])
def test_unsafe_names_are_fatal(bad: str) -> None:
    with pytest.raises(ReleaseConflictError, match="not a safe name") as err:
        safe_name(bad, "release id")
    assert isinstance(err.value, FatalError)


def test_safe_names_pass() -> None:
    assert safe_name("scheduled__2026-11-23T02_00_00_00_00", "release id").startswith("scheduled")
    assert safe_name("x.partial", "release id") == "x.partial"  # staging lives elsewhere: no collision
    assert [label_for(k) for k in ("pi", "qemu", "simulated")] == ["native", "emulated", "host"]
