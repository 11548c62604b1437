"""The new-data trigger: its debounce against the real MinIO (uploads under unique prefixes), its config, and
the nightly DAG's dataset asset. The trigger's account is a throw-away service account with the pipeline's own
policy (scripts/devstack/minio.py), so the test does not depend on when the shared stack last applied it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from edgeops_airflow.new_data import dataset_asset, watched_location
from edgeops_airflow.triggers import MinioNewObjectsTrigger

from tasks.core import names
from tasks.core.exceptions import ConfigError, StorageError
from tasks.core.results import NewDataEvent
from tests.helpers import conn_env_var, run_coroutine
from tests.integration.minio_accounts import service_account


@pytest.fixture
def watch_conn(stack_env, monkeypatch) -> dict:
    with service_account(stack_env, watched=(stack_env["s3"]["datasets_bucket"],)) as conn:
        monkeypatch.setenv(conn_env_var(names.MINIO_CONN_ID), json.dumps(conn))
        yield conn


@pytest.fixture
def prefixes(stack_env, admin_s3):
    """Unique prefixes in the datasets bucket, deleted afterwards (the pipeline's account cannot delete)."""
    made: list[str] = []

    def make(name: str) -> str:
        made.append(f"trigger-test-{uuid.uuid4().hex[:10]}-{name}/")
        return made[-1]

    yield make
    bucket = stack_env["s3"]["datasets_bucket"]
    for prefix in made:
        for obj in admin_s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            admin_s3.delete_object(Bucket=bucket, Key=obj["Key"])


def upload(admin_s3, bucket: str, prefix: str, n: int) -> list[str]:
    keys = [f"{prefix}class_{i % 2}/img {i:03d}.png" for i in range(n)]  # a space: keys arrive URL-encoded
    for key in keys:
        admin_s3.put_object(Bucket=bucket, Key=key, Body=uuid.uuid4().bytes)
    return keys


async def collect(trigger: MinioNewObjectsTrigger, action, listen_for: float) -> list[NewDataEvent]:
    """Run the trigger, do ``action`` once it is listening, and return every event yielded in ``listen_for`` s."""
    events: list[NewDataEvent] = []

    async def consume() -> None:
        async for event in trigger.run():
            events.append(NewDataEvent.from_xcom(event.payload))

    task = asyncio.create_task(consume())
    await asyncio.sleep(1.5)  # connect + baseline listing
    await asyncio.to_thread(action)
    await asyncio.sleep(listen_for)
    if task.done():
        task.result()  # raise the trigger's error
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return events


@pytest.mark.integration
def test_a_burst_of_uploads_makes_exactly_one_event(stack_env, watch_conn, admin_s3, prefixes) -> None:
    bucket, mine, other = stack_env["s3"]["datasets_bucket"], prefixes("mine"), prefixes("other")
    # rescan_seconds=0: only the notification stream starts the burst; the settle listing counts its tail
    trigger = MinioNewObjectsTrigger(bucket, mine, quiet_seconds=2, max_wait_seconds=60, rescan_seconds=0)
    keys: list[str] = []
    start = time.monotonic()
    events = run_coroutine(collect(
        trigger, lambda: (keys.extend(upload(admin_s3, bucket, mine, 12)), upload(admin_s3, bucket, other, 5)),
        listen_for=8))
    assert len(events) == 1, events
    assert events[0].objects == 12 and events[0].bucket == bucket and events[0].prefix == mine
    assert set(events[0].keys) <= set(keys) and all(k.startswith(mine) for k in events[0].keys)
    assert time.monotonic() - start < 30


@pytest.mark.integration
def test_a_lone_upload_fires_and_other_prefixes_do_not(stack_env, watch_conn, admin_s3, prefixes) -> None:
    bucket, mine, other = stack_env["s3"]["datasets_bucket"], prefixes("mine"), prefixes("other")
    upload(admin_s3, bucket, mine, 3)  # already there: the baseline, not new data
    trigger = MinioNewObjectsTrigger(bucket, mine, quiet_seconds=1, max_wait_seconds=30, rescan_seconds=1)
    assert run_coroutine(collect(trigger, lambda: upload(admin_s3, bucket, other, 4), listen_for=4)) == []

    lone = f"{mine}late/one.png"
    trigger = MinioNewObjectsTrigger(bucket, mine, quiet_seconds=1, max_wait_seconds=30, rescan_seconds=1)
    events = run_coroutine(collect(
        trigger, lambda: admin_s3.put_object(Bucket=bucket, Key=lone, Body=b"x"), listen_for=5))
    assert [(e.objects, e.keys) for e in events] == [(1, (lone,))]


@pytest.mark.integration
def test_collected_samples_under_incoming_are_not_new_data(stack_env, watch_conn, admin_s3, prefixes) -> None:
    """Hourly collections put device samples in <dataset>/_incoming/: no retrain; a labelled one (moved into
    <class>/) is new data."""
    bucket, mine = stack_env["s3"]["datasets_bucket"], prefixes("mine")
    incoming = [f"{mine}_incoming/pi1/run.int8/s{i}.npz" for i in range(3)]
    labelled = f"{mine}cat/s0.npz"

    def collected_then_labelled() -> None:
        for key in incoming:
            admin_s3.put_object(Bucket=bucket, Key=key, Body=uuid.uuid4().bytes)
        time.sleep(2.5)
        admin_s3.copy_object(Bucket=bucket, Key=labelled, CopySource={"Bucket": bucket, "Key": incoming[0]})

    trigger = MinioNewObjectsTrigger(bucket, mine, quiet_seconds=1, max_wait_seconds=30, rescan_seconds=1)
    events = run_coroutine(collect(trigger, collected_then_labelled, listen_for=5))
    assert [(e.objects, e.keys) for e in events] == [(1, (labelled,))]


@pytest.mark.integration
def test_an_account_that_may_not_listen_gets_one_clear_error(stack_env, monkeypatch, prefixes) -> None:
    bucket = stack_env["s3"]["datasets_bucket"]
    with service_account(stack_env, watched=()) as conn:
        monkeypatch.setenv(conn_env_var(names.MINIO_CONN_ID), json.dumps(conn))
        trigger = MinioNewObjectsTrigger(bucket, prefixes("denied"), quiet_seconds=1, rescan_seconds=0)
        with pytest.raises(StorageError, match="s3:ListenBucketNotification"):
            run_coroutine(collect(trigger, lambda: None, listen_for=3))


def test_trigger_validates_and_serializes() -> None:
    with pytest.raises(ConfigError, match="quiet_seconds"):
        MinioNewObjectsTrigger("datasets", quiet_seconds=60, max_wait_seconds=10)
    with pytest.raises(ConfigError, match="bucket"):
        MinioNewObjectsTrigger("datasets/digits")
    with pytest.raises(ConfigError, match="rescan_seconds"):
        MinioNewObjectsTrigger("datasets", rescan_seconds=-1)
    trigger = MinioNewObjectsTrigger("datasets", "digits/", quiet_seconds=5, max_wait_seconds=50)
    classpath, kwargs = trigger.serialize()
    assert classpath == "edgeops_airflow.triggers.MinioNewObjectsTrigger"
    assert MinioNewObjectsTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert kwargs["conn_id"] == names.MINIO_CONN_ID


def test_dataset_asset_watches_the_profiles_source(monkeypatch) -> None:
    assert watched_location("s3://datasets/digits/") == ("datasets", "digits/")
    assert watched_location("s3://datasets") == ("datasets", "")
    assert watched_location("tfds:cats_vs_dogs") is None

    monkeypatch.setenv(names.ENV_NEW_DATA_QUIET, "7")
    asset = dataset_asset("tiny")
    assert asset.name == names.DATASET_ASSET and asset.uri == "x-minio://datasets/digits"
    assert asset.extra == {"source": "s3://datasets/digits"}
    [watcher] = asset.watchers
    assert watcher.trigger.serialize()[1] | {"quiet_seconds": 7.0} == watcher.trigger.serialize()[1]
    assert (watcher.trigger.bucket, watcher.trigger.prefix) == (names.DATASETS_BUCKET, "digits/")

    assert dataset_asset("seed").watchers == []  # tfds: nothing in the store to watch; 02:00 only
    monkeypatch.setenv(names.ENV_NEW_DATA_SOURCE, "s3://datasets/incoming/")
    assert dataset_asset("seed").watchers[0].trigger.prefix == "incoming/"
    monkeypatch.setenv(names.ENV_NEW_DATA_SOURCE, "tfds:mnist")
    with pytest.raises(ConfigError, match=names.ENV_NEW_DATA_SOURCE):
        dataset_asset("tiny")
    monkeypatch.delenv(names.ENV_NEW_DATA_SOURCE)
    monkeypatch.setenv(names.ENV_NEW_DATA_QUIET, "soon")
    with pytest.raises(ConfigError, match=names.ENV_NEW_DATA_QUIET):
        dataset_asset("tiny")
