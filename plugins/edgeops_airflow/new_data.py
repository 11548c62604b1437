"""The nightly DAG's schedule: its cron (``$EDGEOPS_NIGHTLY_CRON``, default 02:00 UTC) and its dataset asset, the
default profile's ``data.source``, watched for uploads by ``triggers.MinioNewObjectsTrigger`` (debounce settings
from the environment, see ``tasks/core/names.py``)."""

from __future__ import annotations

import os

from airflow.sdk import Asset, AssetWatcher

from edgeops_airflow.triggers import MinioNewObjectsTrigger
from tasks.core import names
from tasks.core.exceptions import ConfigError
from tasks.core.keys import S3_SCHEME, parse_s3_uri


def watched_location(source: str) -> tuple[str, str] | None:
    """(bucket, prefix) that an ``s3://`` data source reads; None for sources outside the store (``tfds:``)."""
    if not source.startswith(S3_SCHEME):
        return None
    bucket, prefix = parse_s3_uri(source)
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _seconds(env: str, default: float) -> float:
    raw = os.environ.get(env, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        raise ConfigError(f"{env}={raw!r}: give a number of seconds") from None


def nightly_cron() -> str:
    """The nightly's cron expression, UTC (``$EDGEOPS_NIGHTLY_CRON``, default ``0 2 * * *``); a bad one fails the
    DAG's parse with the value to fix."""
    from croniter import croniter

    cron = os.environ.get(names.ENV_NIGHTLY_CRON, "").strip() or names.DEFAULT_NIGHTLY_CRON
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ConfigError(f"{names.ENV_NIGHTLY_CRON}={cron!r}: give a 5-field cron expression in UTC, e.g. "
                          f"{names.DEFAULT_NIGHTLY_CRON!r}")
    return cron


def asset_uri(bucket: str, prefix: str) -> str:
    """``x-minio://<bucket>/<prefix>``. Any other scheme makes Airflow load every provider's URI normaliser at
    parse time (the amazon one imports boto3); ``x-`` schemes are left alone. The source is in ``extra``."""
    return f"x-minio://{bucket}/{prefix.strip('/')}".rstrip("/")


def dataset_asset(profile: str | None = None) -> Asset:
    """The asset the nightly DAG is scheduled on: the default profile's ``data.source`` (or
    ``$EDGEOPS_NEW_DATA_SOURCE``), watched for uploads. A source outside the store (``tfds:``) gets no watcher:
    the DAG then runs on its time schedule only."""
    from edgeops_airflow.params import DEFAULT_PROFILE
    from tasks.core.config import DataConfig, load_config

    if override := os.environ.get(names.ENV_NEW_DATA_SOURCE, "").strip():
        if not override.startswith(S3_SCHEME):
            raise ConfigError(f"{names.ENV_NEW_DATA_SOURCE}={override!r}: give s3://<bucket>/<prefix>")
        source = DataConfig(source=override).source
    else:
        source = load_config(profile or DEFAULT_PROFILE).data.source
    where = watched_location(source)
    extra = {"source": source}
    if where is None:
        return Asset(name=names.DATASET_ASSET, uri=asset_uri(names.DATASETS_BUCKET, ""), extra=extra)
    trigger = MinioNewObjectsTrigger(
        bucket=where[0], prefix=where[1],
        quiet_seconds=_seconds(names.ENV_NEW_DATA_QUIET, names.DEFAULT_NEW_DATA_QUIET_SECONDS),
        max_wait_seconds=_seconds(names.ENV_NEW_DATA_MAX_WAIT, names.DEFAULT_NEW_DATA_MAX_WAIT_SECONDS),
        rescan_seconds=_seconds(names.ENV_NEW_DATA_RESCAN, names.DEFAULT_NEW_DATA_RESCAN_SECONDS),
    )
    return Asset(name=names.DATASET_ASSET, uri=asset_uri(*where), extra=extra,
                 watchers=[AssetWatcher(name=f"{names.DATASET_ASSET}_uploads", trigger=trigger)])
