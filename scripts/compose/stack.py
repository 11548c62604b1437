"""The compose view of config/stack.json: service names instead of 127.0.0.1, container ports, volume paths."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from scripts.devstack.common import load_stack

# volume `keys` (the workers'): one client key per device and every device's PUBLIC host key (pinned)
KEYS = Path(os.environ.get("EDGEOPS_KEYS_DIR", "/keys"))
SECRETS = Path(os.environ.get("EDGEOPS_SECRETS_DIR", "/secrets"))  # volume `airflow-secrets`
# volume `<service>-sshd` per device, mounted here in secrets-init and at /etc/edgeops-ssh in the device: its own
# host key and the one public key it authorizes. A device holds no client key and no other device's host key.
DEVICE_SSH = Path(os.environ.get("EDGEOPS_DEVICE_SSH_DIR", "/devices"))
DEVICE_LOGIN = "pi"  # every device image's login user (root login is off)
MINIO_SERVICE = "minio"
# Where the device images keep the pinned runtime venvs (docker/services.Dockerfile, scripts/images/
# pi_arm64_runtime.sh bake them in): outside the device's home volume, which would shadow a baked-in path.
RUNTIME_ROOT = "/opt/edgeops/runtimes"


def service_name(device: str) -> str:
    return device.replace("_", "-")


def client_key(device: str) -> Path:
    """The private key the workers log in to ``device`` with (its own: a leaked one opens one device)."""
    return KEYS / f"client_{device}_ed25519"


def host_key(device: str) -> Path:
    """The device's private host key, in its own sshd volume (seen by secrets-init and that device only)."""
    return DEVICE_SSH / service_name(device) / "host_key"


def host_key_pub(device: str) -> Path:
    """The public host key the connection pins, in the workers' keys volume."""
    return KEYS / f"ssh_host_{device}_ed25519_key.pub"


def authorized_keys(device: str) -> Path:
    return DEVICE_SSH / service_name(device) / "authorized_keys"


def compose_stack() -> dict:
    """config/stack.json with the addresses containers use on the compose network."""
    cfg = copy.deepcopy(load_stack())
    cfg["minio"].update(host=MINIO_SERVICE, port=9000, console_port=9001)
    # root credentials as the minio service got them (docker-compose.yml x-minio-root, from .env); empty in the
    # jobs that never use them: never the dev stack's (config/stack.json)
    cfg["minio"]["access_key"] = os.environ.get("MINIO_ROOT_USER", "")
    cfg["minio"]["secret_key"] = os.environ.get("MINIO_ROOT_PASSWORD", "")
    for dev in cfg["devices"]:
        dev.update(host=service_name(dev["name"]), port=22)
    return cfg


def describe(dev: dict) -> dict:
    """The device description scripts/devstack/devices.connection() turns into an Airflow SSH connection."""
    login = DEVICE_LOGIN
    home = f"/home/{login}"
    pub = host_key_pub(dev["name"]).read_text().split()
    return {
        "name": dev["name"], "host": dev["host"], "port": dev["port"], "user": login,
        "key_file": str(client_key(dev["name"])), "host_key": " ".join(pub[:2]),
        "deploy_root": f"{home}/edgeops", "python": "/usr/bin/python3",
    }
