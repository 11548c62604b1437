"""The compose view of config/stack.json: service names instead of 127.0.0.1, container ports, volume paths."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from scripts.devstack.common import load_stack

KEYS = Path(os.environ.get("EDGEOPS_KEYS_DIR", "/keys"))  # volume `keys`: client key + device host keys
SECRETS = Path(os.environ.get("EDGEOPS_SECRETS_DIR", "/secrets"))  # volume `airflow-secrets`
CLIENT_KEY = KEYS / "id_ed25519"
DEVICE_LOGIN = {"qemu": "root"}  # the arm64 image has only root; x86 device images have user `pi`
MINIO_SERVICE = "minio"
# Where the device images keep the pinned runtime venvs (docker/services.Dockerfile, scripts/images/
# pi_arm64_runtime.sh bake them in): outside the device's home volume, which would shadow a baked-in path.
RUNTIME_ROOT = "/opt/edgeops/runtimes"


def service_name(device: str) -> str:
    return device.replace("_", "-")


def host_key(device: str) -> Path:
    return KEYS / f"ssh_host_{device}_ed25519_key"


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
    login = DEVICE_LOGIN.get(dev.get("kind", ""), "pi")
    home = "/root" if login == "root" else f"/home/{login}"
    pub = host_key(dev["name"]).with_suffix(".pub").read_text().split()
    return {
        "name": dev["name"], "host": dev["host"], "port": dev["port"], "user": login,
        "key_file": str(CLIENT_KEY), "host_key": " ".join(pub[:2]),
        "deploy_root": f"{home}/edgeops", "python": "/usr/bin/python3",
    }
