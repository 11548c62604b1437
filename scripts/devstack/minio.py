"""MinIO: one local server (binary built by scripts/build_minio.sh) plus the project's buckets."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from .common import (
    LOGS,
    REPO,
    STATE,
    DevstackError,
    cache_dir,
    ensure_port_free,
    http_ok,
    running,
    spawn,
    stop,
    wait_for,
    write_private,
)

NAME = "minio"
LOG = LOGS / "minio.log"
DATA = STATE / "minio" / "data"
PIPELINE_ACCESS_KEY = "edgeops-pipeline"  # the service account every pipeline process uses (never root)


def endpoint(cfg: dict) -> str:
    return f"http://{cfg['minio']['host']}:{cfg['minio']['port']}"


def console_url(cfg: dict) -> str:
    return f"http://{cfg['minio']['host']}:{cfg['minio']['console_port']}"


def health_url(cfg: dict) -> str:
    return endpoint(cfg) + "/minio/health/live"


def binary(cfg: dict) -> Path:
    override = os.environ.get("EDGEOPS_MINIO_BIN")
    path = Path(override) if override else cache_dir() / "bin" / f"minio-{cfg['minio']['module_version']}"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise DevstackError(
            f"MinIO binary missing: {path}\n  build it (~4 min cold): {REPO / 'scripts' / 'build_minio.sh'}"
        )
    return path


def up(cfg: dict) -> None:
    m = cfg["minio"]
    pid = running(NAME)
    if pid:
        print(f"minio: already running (pid {pid})")
    else:
        exe = binary(cfg)
        ensure_port_free(m["host"], m["port"], "MinIO API")
        ensure_port_free(m["host"], m["console_port"], "MinIO console")
        DATA.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            MINIO_ROOT_USER=m["access_key"],
            MINIO_ROOT_PASSWORD=m["secret_key"],
            MINIO_UPDATE="off",
            MINIO_BROWSER="on",
        )
        argv = [
            str(exe),
            "server",
            str(DATA),
            "--address",
            f"{m['host']}:{m['port']}",
            "--console-address",
            f"{m['host']}:{m['console_port']}",
        ]
        proc = spawn(NAME, argv, LOG, env)
        took = wait_for(lambda: http_ok(health_url(cfg)), f"MinIO at {health_url(cfg)}", LOG, 60, proc)
        print(f"minio: started (pid {proc.pid}) in {took:.1f}s, log {LOG}")
    ensure_buckets(cfg)
    ensure_service_account(cfg)


def client(cfg: dict):
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tasks.core.storage import make_client

    return make_client(endpoint(cfg), cfg["minio"]["access_key"], cfg["minio"]["secret_key"])


def ensure_buckets(cfg: dict) -> None:
    from botocore.exceptions import ClientError

    s3, m = client(cfg), cfg["minio"]
    for bucket in (m["artifacts_bucket"], m["datasets_bucket"]):
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)
            print(f"minio: created bucket {bucket}")
    s3.put_bucket_versioning(Bucket=m["artifacts_bucket"], VersioningConfiguration={"Status": "Enabled"})
    status = s3.get_bucket_versioning(Bucket=m["artifacts_bucket"]).get("Status")
    if status != "Enabled":
        raise DevstackError(f"minio: versioning on {m['artifacts_bucket']} is {status!r}, expected 'Enabled'")
    print(f"minio: buckets {m['artifacts_bucket']} (versioning Enabled), {m['datasets_bucket']} ready")


def pipeline_policy(buckets: tuple[str, ...], watched: tuple[str, ...] = ()) -> dict:
    """What the pipeline may do: read and write objects (and their versions) in its buckets, and listen to the
    object notifications of the ``watched`` ones (the triggerer's new-data watcher); nothing else (no deletes,
    no bucket or admin operations, no other bucket)."""
    arns = [f"arn:aws:s3:::{b}" for b in buckets]
    statements = [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation",
                                       "s3:GetBucketVersioning", "s3:ListBucketMultipartUploads"], "Resource": arns},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                                       "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
         "Resource": [f"{a}/*" for a in arns]},
    ]
    if watched:
        statements.append({"Effect": "Allow", "Action": ["s3:ListenBucketNotification"],
                           "Resource": [f"arn:aws:s3:::{b}" for b in watched]})
    return {"Version": "2012-10-17", "Statement": statements}


def service_account(cfg: dict) -> tuple[str, str]:
    """(access key, secret) of the pipeline's service account; the secret is generated once, kept private."""
    secret_file = STATE / "minio-service-account.secret"
    if not secret_file.exists():
        write_private(secret_file, secrets.token_urlsafe(30))
    return PIPELINE_ACCESS_KEY, secret_file.read_text().strip()


def ensure_service_account(cfg: dict) -> None:
    """Create (once) the service account the pipeline uses instead of MinIO's root user (MinioAdmin)."""
    from minio import MinioAdmin
    from minio.credentials import StaticProvider
    from minio.error import MinioAdminException

    m = cfg["minio"]
    admin = MinioAdmin(endpoint=f"{m['host']}:{m['port']}", secure=False,
                       credentials=StaticProvider(m["access_key"], m["secret_key"]))
    access, secret = service_account(cfg)
    policy = pipeline_policy((m["artifacts_bucket"], m["datasets_bucket"]), watched=(m["datasets_bucket"],))
    try:
        admin.get_service_account(access)
        admin.update_service_account(access_key=access, secret_key=secret, policy=policy)
    except MinioAdminException:
        admin.add_service_account(access_key=access, secret_key=secret, name="edgeops-pipeline", policy=policy,
                                  description="edgeops pipeline: objects in the artifacts and datasets buckets only")
    print(f"minio: service account {access} limited to {m['artifacts_bucket']}, {m['datasets_bucket']}")


def down() -> None:
    print("minio: stopped" if stop(NAME) else "minio: not running")


def status(cfg: dict) -> bool:
    pid = running(NAME)
    healthy = http_ok(health_url(cfg))
    state = f"up (pid {pid})" if pid and healthy else f"STARTING/UNHEALTHY (pid {pid})" if pid else "down"
    print(
        f"minio:     {state}\n  api:     {endpoint(cfg)}\n  console: {console_url(cfg)}  "
        f"(login {cfg['minio']['access_key']} / see {STATE / 'minio-root.secret'})"
    )
    return bool(pid and healthy)


def connection(cfg: dict) -> dict:
    """Airflow JSON connection (conn_type aws, usable as AIRFLOW_CONN_<ID>) for the MinIO endpoint."""
    access, secret = service_account(cfg)
    return {
        "conn_type": "aws",
        "login": access,
        "password": secret,
        # console_url: the MinIO console, for the Artifacts extra link (plugins/edgeops_airflow/ui/links.py)
        "extra": {"endpoint_url": endpoint(cfg), "region_name": "us-east-1", "console_url": console_url(cfg)},
    }
