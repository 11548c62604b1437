"""`devstack up --devices N`: pi1..piN on their own ports, keys and roots, and a fleet inventory for them.

The pure functions are unit tests. The integration test starts extra sshd devices in a TEMPORARY state dir on
free ports (never the shared stack's devices) and logs in with each one's pinned host key."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest

from scripts.devstack import common, devices
from scripts.devstack.common import DevstackError
from tasks.fleet.inventory import Inventory

REPO = Path(__file__).resolve().parents[2]
BASE_FLEET = json.loads((REPO / "config" / "fleet.json").read_text())
STACK = {"devices": [{"name": "pi1", "host": "127.0.0.1", "port": 2221},
                     {"name": "pi2", "host": "127.0.0.1", "port": 2222},
                     {"name": "pi_arm64", "host": "127.0.0.1", "port": 2223, "kind": "qemu", "optional": True}]}


def test_n_devices_get_their_own_ports_skipping_the_container_device() -> None:
    cfg = devices.with_devices(STACK, 5)
    assert [(d["name"], d["port"]) for d in cfg["devices"]] == [
        ("pi1", 2221), ("pi2", 2222), ("pi3", 2224), ("pi4", 2225), ("pi5", 2226), ("pi_arm64", 2223)]
    assert [d["name"] for d in devices.process_devices(devices.with_devices(STACK, 1))] == ["pi1"]
    assert STACK["devices"][0] == {"name": "pi1", "host": "127.0.0.1", "port": 2221}  # the input is not changed
    with pytest.raises(DevstackError, match="--devices 0"):
        devices.with_devices(STACK, 0)


def test_generated_fleet_has_pi1_as_canary_and_waves_without_gaps() -> None:
    fleet = devices.fleet_inventory(devices.with_devices(STACK, 4), BASE_FLEET, waves=2)
    inv = Inventory.from_dict(fleet)
    assert [[d.name for d in w] for w in inv.waves()] == [["pi1"], ["pi2", "pi3", "pi4", "pi_arm64"]]
    assert inv.device("pi_arm64").optional and inv.group_of("pi4") == inv.group_of("pi1")
    eight = Inventory.from_dict(devices.fleet_inventory(devices.with_devices(STACK, 8), BASE_FLEET, waves=3))
    assert [len(w) for w in eight.waves()] == [1, 5, 3]  # pi2..pi5 + pi_arm64, then pi6..pi8
    with pytest.raises(DevstackError, match="--waves 1"):
        devices.fleet_inventory(STACK, BASE_FLEET, waves=1)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture
def private_state(tmp_path, monkeypatch) -> Path:
    """Point the devstack's device state at a temporary dir: the shared stack is never touched."""
    state = tmp_path / "state"
    for module, name, value in ((devices, "STATE", state), (devices, "LOGS", state / "logs"),
                                (common, "LOGS", state / "logs"), (common, "RUN", state / "run"),
                                (devices, "CLIENT_KEY", state / "keys" / "id_ed25519"),
                                (devices, "KNOWN_HOSTS", state / "keys" / "known_hosts")):
        monkeypatch.setattr(module, name, value)
    return state


@pytest.mark.integration
def test_extra_devices_start_with_their_own_host_keys_and_roots(private_state) -> None:
    import paramiko

    a, b = free_ports(2)
    base = {"devices": [{"name": "pi1", "host": "127.0.0.1", "port": a}]}
    cfg = devices.with_devices(base, 2, first_port=b)
    try:
        devices.up(cfg)
        described = [devices.describe(d) for d in cfg["devices"]]
        assert described[0]["host_key"] != described[1]["host_key"]
        assert described[0]["deploy_root"] != described[1]["deploy_root"]
        for d in described:
            assert d["deploy_root"].startswith(str(private_state))
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            key_type, b64 = d["host_key"].split()
            client.get_host_keys().add(f"[{d['host']}]:{d['port']}", key_type,
                                       paramiko.PKey.from_type_string(key_type, base64.b64decode(b64)))
            client.connect(d["host"], port=d["port"], username=d["user"], key_filename=d["key_file"],
                           look_for_keys=False, allow_agent=False, timeout=10)
            _, out, _ = client.exec_command(f"test -d {d['deploy_root']} && echo ok")
            assert out.read().decode().strip() == "ok"
            client.close()
    finally:
        devices.down(cfg)


def test_device_count_is_remembered_and_a_smaller_n_stops_the_rest(private_state, monkeypatch) -> None:
    from scripts.devstack.__main__ import apply_device_count, shell_lines

    monkeypatch.setattr(devices, "DEVICE_COUNT", private_state / "device-count")
    assert apply_device_count(STACK, None) == STACK  # nothing asked, nothing remembered: the config as is
    assert len(devices.process_devices(apply_device_count(STACK, 4))) == 4
    assert len(devices.process_devices(apply_device_count(STACK, None))) == 4  # status/env/down see the same N
    stopped: list[str] = []
    monkeypatch.setattr(devices, "down", lambda cfg: stopped.extend(d["name"] for d in cfg["devices"]))
    assert [d["name"] for d in devices.process_devices(apply_device_count(STACK, 2))] == ["pi1", "pi2"]
    assert stopped == ["pi3", "pi4"] and devices.saved_count() == 2

    monkeypatch.setattr(devices, "FLEET_JSON", private_state / "fleet.json")
    doc = {"s3": {k: "x" for k in ("endpoint", "access_key", "secret_key", "artifacts_bucket", "datasets_bucket")},
           "connections": {}}
    assert not any("EDGEOPS_FLEET" in line for line in shell_lines(doc))
    devices.FLEET_JSON.write_text("{}")
    assert f"export EDGEOPS_FLEET={devices.FLEET_JSON}" in shell_lines(doc)
