"""The local devstack answers as the pipeline expects: MinIO buckets, and SSH devices with pinned host keys.

Needs the stack up:  .venv/bin/python -m scripts.devstack up --no-airflow
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest

from tests.conftest import ENV_FILE, STACK_FILE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ENV_JSON = ENV_FILE
UP = ".venv/bin/python -m scripts.devstack up --no-airflow"
_LIVE = {d["name"] for d in json.loads(ENV_JSON.read_text())["devices"]} if ENV_JSON.exists() else set()
DEVICE_NAMES = [
    d["name"]
    for d in json.loads(STACK_FILE.read_text())["devices"]
    if not d.get("optional") or d["name"] in _LIVE  # optional (container) devices only while they are up
]


@pytest.fixture(scope="module")
def stack() -> dict:
    if not ENV_JSON.exists():
        pytest.fail(f"{ENV_JSON} is missing; start the devstack first. run: {UP}", pytrace=False)
    doc = json.loads(ENV_JSON.read_text())
    endpoint = doc["s3"]["endpoint"].split("//", 1)[-1].rstrip("/")
    services = [("MinIO", *endpoint.rsplit(":", 1))]
    services += [(f"device {d['name']}", d["host"], d["port"]) for d in doc["devices"]]
    for what, host, port in services:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError:
            pytest.fail(f"devstack {what} is not answering on {host}:{port}. run: {UP}", pytrace=False)
    return doc


@pytest.fixture(scope="module")
def s3(stack: dict):
    from tasks.core.storage import make_client

    cfg = stack["s3"]
    return make_client(cfg["endpoint"], cfg["access_key"], cfg["secret_key"])


def _device(stack: dict, name: str) -> dict:
    matches = [d for d in stack["devices"] if d["name"] == name]
    assert matches, f"device {name} of config/stack.json is not in {ENV_JSON}; re-run: {UP}"
    return matches[0]


def _ssh(dev: dict, pinned_host_key: str | None, **auth):
    """Connect with RejectPolicy and ONLY the given pinned host key ('ssh-ed25519 AAAA...') known."""
    import base64

    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if pinned_host_key:
        key_type, b64 = pinned_host_key.split()[:2]
        key = paramiko.PKey.from_type_string(key_type, base64.b64decode(b64))
        client.get_host_keys().add(f"[{dev['host']}]:{dev['port']}", key_type, key)
    auth = auth or {"key_filename": dev["key_file"]}
    client.connect(
        dev["host"],
        port=dev["port"],
        username=dev["user"],
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
        banner_timeout=10,
        auth_timeout=10,
        **auth,
    )
    return client


def _run(client, command: str) -> tuple[int, str]:
    _, stdout, _ = client.exec_command(command, timeout=20)
    out = stdout.read().decode()
    return stdout.channel.recv_exit_status(), out


def _other_ed25519_key() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


# --- MinIO ------------------------------------------------------------------------------------------------
def test_buckets_exist_and_artifacts_is_versioned(stack: dict, s3) -> None:
    for bucket in (stack["s3"]["artifacts_bucket"], stack["s3"]["datasets_bucket"]):
        s3.head_bucket(Bucket=bucket)
    versioning = s3.get_bucket_versioning(Bucket=stack["s3"]["artifacts_bucket"])
    assert versioning.get("Status") == "Enabled"


def test_artifact_store_round_trip(stack: dict, s3, admin_s3) -> None:
    from tasks.core.storage import ArtifactStore

    store = ArtifactStore(s3, stack["s3"]["artifacts_bucket"])
    key = f"devstack-selftest/{uuid.uuid4().hex}.json"
    try:
        art = store.put_json(key, {"ok": True})
        assert store.get_json(key) == {"ok": True}
        assert store.head(key).sha256 == art.sha256
    finally:
        versions = admin_s3.list_object_versions(Bucket=store.bucket, Prefix=key)
        for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            admin_s3.delete_object(Bucket=store.bucket, Key=v["Key"], VersionId=v["VersionId"])


def test_pipeline_credentials_are_a_least_privilege_service_account(stack: dict, s3, admin_s3) -> None:
    """The pipeline's account reads/writes objects in its two buckets and can do nothing else."""
    from botocore.exceptions import ClientError

    assert stack["s3"]["access_key"] != stack["s3_admin"]["access_key"]
    key = f"devstack-selftest/{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket=stack["s3"]["artifacts_bucket"], Key=key, Body=b"x")
    other = f"not-edgeops-{uuid.uuid4().hex[:8]}"
    admin_s3.create_bucket(Bucket=other)
    try:
        for forbidden in (lambda: s3.delete_object(Bucket=stack["s3"]["artifacts_bucket"], Key=key),
                          lambda: s3.create_bucket(Bucket=f"x-{uuid.uuid4().hex[:8]}"),
                          lambda: s3.put_object(Bucket=other, Key="k", Body=b"x"),
                          lambda: s3.list_objects_v2(Bucket=other)):
            with pytest.raises(ClientError, match="AccessDenied"):
                forbidden()
    finally:
        admin_s3.delete_bucket(Bucket=other)


# --- simulated devices ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_device_accepts_project_key_with_pinned_host_key(stack: dict, name: str) -> None:
    dev = _device(stack, name)
    with _ssh(dev, dev["host_key"]) as client:
        assert _run(client, "echo ok") == (0, "ok\n")
        check = f"test -d {dev['deploy_root']} && test -x {dev['python']} && echo yes"
        assert _run(client, check) == (0, "yes\n")


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_device_with_wrong_pinned_host_key_is_rejected(stack: dict, name: str) -> None:
    import paramiko

    dev = _device(stack, name)
    with pytest.raises(paramiko.BadHostKeyException):
        _ssh(dev, _other_ed25519_key())


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_device_with_no_pinned_host_key_is_rejected(stack: dict, name: str) -> None:
    import paramiko

    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _ssh(_device(stack, name), None)


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_device_refuses_password_login(stack: dict, name: str) -> None:
    import paramiko

    dev = _device(stack, name)
    with pytest.raises(paramiko.AuthenticationException):
        _ssh(dev, dev["host_key"], password="not-a-key")


def test_device_host_keys_are_distinct(stack: dict) -> None:
    keys = [d["host_key"] for d in stack["devices"]]
    assert all(k.startswith("ssh-ed25519 AAAA") for k in keys)
    assert len(set(keys)) == len(keys)


# --- the Airflow connections the DAGs will use ------------------------------------------------------------
def test_airflow_connections_match_devices(stack: dict) -> None:
    conns = stack["connections"]
    for dev in stack["devices"]:
        extra = conns[dev["conn_id"]]["extra"]
        assert conns[dev["conn_id"]]["conn_type"] == "ssh"
        assert extra["host_key"] == dev["host_key"]
        assert extra["no_host_key_check"] is False and extra["allow_host_key_change"] is False
    s3_conn = [c for c in conns.values() if c["conn_type"] == "aws"]
    assert len(s3_conn) == 1 and s3_conn[0]["extra"]["endpoint_url"] == stack["s3"]["endpoint"]


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_airflow_ssh_hook_connects_with_connection_json(stack: dict, name: str, monkeypatch) -> None:
    """The JSON in env.json, used as AIRFLOW_CONN_<ID>, gives a working, host-key-pinned SSHHook."""
    pytest.importorskip("airflow.providers.ssh.hooks.ssh")
    from airflow.providers.ssh.hooks.ssh import SSHHook

    dev = _device(stack, name)
    conn_json = json.dumps(stack["connections"][dev["conn_id"]])
    monkeypatch.setenv(f"AIRFLOW_CONN_{dev['conn_id'].upper()}", conn_json)
    hook = SSHHook(ssh_conn_id=dev["conn_id"], conn_timeout=10)
    assert hook.no_host_key_check is False and hook.host_key is not None
    with hook.get_conn() as client:
        assert _run(client, "echo ok") == (0, "ok\n")
