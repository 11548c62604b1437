"""Throw-away MinIO service accounts with the pipeline's own policy (scripts/devstack/minio.py), so tests of the
new-data watcher do not depend on when the shared stack last applied that policy."""

from __future__ import annotations

import secrets
from collections.abc import Generator
from contextlib import contextmanager

from scripts.devstack.minio import pipeline_policy


@contextmanager
def service_account(stack_env: dict, watched: tuple[str, ...]) -> Generator[dict, None, None]:
    """A temporary service account, as an aws-type Airflow connection; deleted on exit."""
    from minio import MinioAdmin
    from minio.credentials import StaticProvider

    s3, root = stack_env["s3"], stack_env["s3_admin"]
    admin = MinioAdmin(endpoint=s3["endpoint"].removeprefix("http://"), secure=False,
                       credentials=StaticProvider(root["access_key"], root["secret_key"]))
    access, secret = f"edgeops-t{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    buckets = (s3["artifacts_bucket"], s3["datasets_bucket"])
    admin.add_service_account(access_key=access, secret_key=secret, name=access,
                              policy=pipeline_policy(buckets, watched=watched), description="edgeops watcher test")
    try:
        yield {"conn_type": "aws", "login": access, "password": secret,
               "extra": {"endpoint_url": s3["endpoint"], "region_name": "us-east-1"}}
    finally:
        admin.delete_service_account(access)
