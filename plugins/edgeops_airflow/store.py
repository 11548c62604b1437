"""The Airflow side of object storage: endpoint and credentials come from an Airflow ``aws`` connection.

Object I/O itself stays in ``tasks.core.storage`` (one module, one client library): this only turns a
connection into either a store (for in-process tasks) or environment variables (for step processes).
"""

from __future__ import annotations

from typing import Any


def _hook(conn_id: str) -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import BaseHook

    BaseHook.get_connection(conn_id)  # the AWS hook would silently fall back to ambient credentials
    return S3Hook(aws_conn_id=conn_id)


def artifact_store(conn_id: str, bucket: str) -> Any:
    from tasks.core.storage import ArtifactStore

    return ArtifactStore(_hook(conn_id).get_conn(), bucket)


def step_env(conn_id: str, bucket: str) -> dict[str, str]:
    """Environment a step process needs to reach the store (never logged: it holds the secret)."""
    from tasks.core.names import ENV_BUCKET, ENV_ENDPOINT

    hook = _hook(conn_id)
    creds = hook.get_credentials()
    env = {"AWS_ACCESS_KEY_ID": creds.access_key or "", "AWS_SECRET_ACCESS_KEY": creds.secret_key or "",
           ENV_BUCKET: bucket, "AWS_DEFAULT_REGION": hook.conn_config.region_name or "us-east-1"}
    if creds.token:
        env["AWS_SESSION_TOKEN"] = creds.token
    if hook.conn_config.endpoint_url:
        env[ENV_ENDPOINT] = hook.conn_config.endpoint_url
    return env
