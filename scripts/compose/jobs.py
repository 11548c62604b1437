"""The init jobs of docker-compose.yml (run as root in the Airflow images; see __init__.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from scripts.compose import stack

AIRFLOW_GID = 0  # the airflow user (uid 50000) is in group 0, as in the official image


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write once (never overwrite: keys and secrets must survive `compose down`/`up`)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chown(tmp, 0, AIRFLOW_GID)
    tmp.chmod(mode)
    tmp.replace(path)


def _keypair(private: Path, comment: str, mode: int) -> None:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if private.exists():
        return
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes(ser.Encoding.OpenSSH, ser.PublicFormat.OpenSSH)
    _write(private.with_suffix(".pub"), pub + f" {comment}\n".encode(), 0o644)
    _write(private, key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH, ser.NoEncryption()), mode)


SIGNING_KEY = stack.SECRETS / "signing.json"  # the release signing key, read only by the connections job


def _signing_doc() -> dict:
    from tasks.device.signing import Trust, connection_doc, generate

    return connection_doc(Trust(generate()[0]))


def secrets() -> None:
    """SSH keys (client + a host key per device) and Airflow's own secrets, generated once."""
    cfg = stack.compose_stack()
    # The client key is read by the workers (airflow user, group 0); host keys only by sshd (root).
    _keypair(stack.CLIENT_KEY, "edgeops-compose-client", 0o640)
    for dev in cfg["devices"]:
        _keypair(stack.host_key(dev["name"]), f"edgeops-device-{dev['name']}", 0o600)
    auth = stack.CLIENT_KEY.with_suffix(".pub").read_bytes()
    (stack.KEYS / "authorized_keys").write_bytes(auth)
    (stack.KEYS / "authorized_keys").chmod(0o644)
    for name in ("fernet_key", "jwt_secret", "api_secret_key"):
        _write(stack.SECRETS / name, base64.urlsafe_b64encode(os.urandom(32)), 0o640)
    _write(SIGNING_KEY, json.dumps(_signing_doc()).encode() + b"\n", 0o600)  # root only: the connections job
    print(f"secrets: keys in {stack.KEYS} ({len(cfg['devices'])} device host keys), Airflow secrets in {stack.SECRETS}")


def minio() -> None:
    """Buckets, versioning and the pipeline's service account (devstack's code, with MinIO's root user)."""
    from scripts.devstack import minio as dm

    cfg = stack.compose_stack()
    dm.ensure_buckets(cfg)
    dm.ensure_service_account(cfg)


def seed() -> None:
    """The digits dataset, uploaded by a worker (scikit-learn lives there) with the pipeline's connection."""
    from scripts.compose.summary import store_env
    from tasks.core.names import DATASETS_BUCKET

    uri = f"s3://{DATASETS_BUCKET}/digits"
    subprocess.run([sys.executable, "-m", "tasks.cli", "seed-digits", "--uri", uri], env={**os.environ, **store_env()},
                   check=True)


def connections(out: str) -> None:
    """Every connection the DAG needs, generated from config/stack.json (never by hand)."""
    from scripts.devstack import devices
    from scripts.devstack import minio as dm
    from tasks.core import names

    cfg = stack.compose_stack()
    conns = {cfg["airflow"]["minio_conn_id"]: dm.connection(cfg)}
    for dev in cfg["devices"]:
        conn = devices.connection(dev, stack.describe(dev))
        conn["extra"]["runtime_root"] = stack.RUNTIME_ROOT  # pre-provisioned in the image: no PyPI on compose
        conns[devices.conn_id(dev["name"])] = conn
    conns[names.SIGNING_CONN_ID] = json.loads(SIGNING_KEY.read_text())  # Airflow's alone: never in a step's env
    path = Path(out)
    path.write_text(json.dumps(conns, indent=2) + "\n")
    path.chmod(0o600)
    print(f"connections: {', '.join(conns)} -> {path}")
