"""The init jobs of docker-compose.yml (run as root in the Airflow images; see __init__.py)."""

from __future__ import annotations

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


def _put(path: Path, data: bytes, mode: int) -> None:
    """Write a secret that .env owns: rewritten when .env's value changed (root:0, ``mode``)."""
    if path.exists() and path.read_bytes() == data:
        return
    path.unlink(missing_ok=True)
    _write(path, data, mode)


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"secrets: {name} is not set: docker-compose.yml passes it from .env, which "
                         f"scripts/compose/up.sh writes at the first `make compose-up`")
    return value


def airflow_secrets() -> dict[str, bytes]:
    """The files Airflow's *_CMD settings and the api-server's login read, from .env's values."""
    pg, redis = _env("EDGEOPS_POSTGRES_PASSWORD"), _env("EDGEOPS_REDIS_PASSWORD")
    db = f"postgresql+psycopg2://airflow:{pg}@postgres/airflow"
    return {
        "fernet_key": _env("EDGEOPS_FERNET_KEY").encode(),
        "jwt_secret": _env("EDGEOPS_JWT_SECRET").encode(),
        "api_secret_key": _env("EDGEOPS_API_SECRET_KEY").encode(),
        "sql_alchemy_conn": db.encode(),
        "celery_result_backend": f"db+{db}".encode(),
        "celery_broker_url": f"redis://:{redis}@redis:6379/0".encode(),
        "simple_auth_manager_passwords.json": json.dumps({"admin": _env("EDGEOPS_AIRFLOW_PASSWORD")}).encode(),
    }


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


def _device_keys(name: str) -> None:
    """One device's keys: its own client key pair (workers: private; device: the public one, its only
    authorized key) and its host key (device: private; workers: the public one, pinned)."""
    _keypair(stack.client_key(name), f"edgeops-compose-client-{name}", 0o640)  # the workers (root)
    _keypair(stack.host_key(name), f"edgeops-device-{name}", 0o600)  # sshd (root) of that device only
    pub = stack.host_key(name).with_suffix(".pub").read_bytes()
    _put(stack.host_key_pub(name), pub, 0o644)
    _put(stack.authorized_keys(name), stack.client_key(name).with_suffix(".pub").read_bytes(), 0o644)


def _drop_shared_keys() -> None:
    """Stacks made before per-device keys kept one shared client key and every host key in `keys`."""
    for old in [stack.KEYS / "id_ed25519", stack.KEYS / "id_ed25519.pub", stack.KEYS / "authorized_keys",
                *stack.KEYS.glob("ssh_host_*_ed25519_key")]:
        old.unlink(missing_ok=True)


def secrets() -> None:
    """SSH keys (per device: a client key pair and a host key), generated once; Airflow's secrets from .env."""
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):  # minio starts after this job: it must have them
        _env(name)
    cfg = stack.compose_stack()
    _drop_shared_keys()
    for dev in cfg["devices"]:
        _device_keys(dev["name"])
    for name, data in airflow_secrets().items():  # read by the airflow user (group 0)
        _put(stack.SECRETS / name, data, 0o640)
    _write(SIGNING_KEY, json.dumps(_signing_doc()).encode() + b"\n", 0o600)  # root only: the connections job
    print(f"secrets: {len(cfg['devices'])} device key sets ({stack.KEYS}, {stack.DEVICE_SSH}/<device>), "
          f"Airflow secrets in {stack.SECRETS}")


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
