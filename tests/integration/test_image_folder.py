"""The s3:// image-folder source against the real MinIO: seeded split and errors that say what to fix."""

from __future__ import annotations

import uuid

import pytest

from tasks.core.config import DataConfig
from tasks.core.exceptions import DatasetError, StorageError
from tasks.core.storage import ArtifactStore
from tasks.ml import data

pytestmark = pytest.mark.integration


@pytest.fixture
def datasets(stack_env, artifact_store, admin_s3):
    store = ArtifactStore(artifact_store.client, stack_env["s3"]["datasets_bucket"])
    prefix = f"itest-{uuid.uuid4().hex[:8]}"
    yield store, prefix
    for obj in list(store.list(prefix + "/")):
        admin_s3.delete_object(Bucket=store.bucket, Key=obj["Key"])


def test_digits_split_is_seeded_and_deterministic(digits, artifact_store):
    cfg = DataConfig(source=digits, image_size=16, max_examples=100, seed=3)
    a, b = data.load_splits(cfg, artifact_store), data.load_splits(cfg, artifact_store)
    # stratified by class: each class's train and val shares round down, so the test split takes the rest
    assert sum(a.counts.values()) == 100 and a.counts["train"] <= 70 and a.counts["val"] <= 20
    assert a.class_names == tuple(str(i) for i in range(10))
    xa, ya = data.to_arrays(a.test)
    xb, yb = data.to_arrays(b.test)
    assert (ya == yb).all() and (xa == xb).all() and xa.shape == (a.counts["test"], 16, 16, 3)
    assert set(ya.tolist()) == set(range(10))  # every class reaches the test split
    other = data.load_splits(DataConfig(source=digits, image_size=16, max_examples=100, seed=4), artifact_store)
    assert a.info["fingerprint"] != other.info["fingerprint"]


def test_missing_path_names_the_expected_layout(datasets, artifact_store):
    store, prefix = datasets
    with pytest.raises(DatasetError, match=r"no images under s3://datasets/.*<class>/\*\.jpg\|png"):
        data.load_splits(DataConfig(source=f"s3://{store.bucket}/{prefix}"), artifact_store)


def test_class_without_images_is_named(datasets, artifact_store):
    store, prefix = datasets
    store.put_bytes(f"{prefix}/cat/1.png", b"x")
    store.put_bytes(f"{prefix}/dog/1.png", b"x")
    store.put_bytes(f"{prefix}/bird/README.txt", b"no images here")
    with pytest.raises(DatasetError, match=r"class folder\(s\) \['bird'\]"):
        data.load_splits(DataConfig(source=f"s3://{store.bucket}/{prefix}"), artifact_store)


def test_single_class_is_refused(datasets, artifact_store):
    store, prefix = datasets
    store.put_bytes(f"{prefix}/cat/1.png", b"x")
    with pytest.raises(DatasetError, match="at least two class folders"):
        data.load_splits(DataConfig(source=f"s3://{store.bucket}/{prefix}"), artifact_store)


def test_minio_down_is_one_clear_error():
    from tasks.core.storage import make_client

    dead = ArtifactStore(make_client("http://127.0.0.1:9", "k", "s"), "datasets")
    with pytest.raises(StorageError, match="object store unreachable at .*is MinIO running"):
        data.load_splits(DataConfig(source="s3://datasets/digits"), dead)
