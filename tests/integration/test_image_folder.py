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


def test_a_labelled_device_sample_is_a_training_image(datasets, artifact_store, admin_s3, tmp_path):
    """Collected samples (``.npz``, ``x`` = the frame as received, under ``_incoming/``) are not read; once a
    person moves them into ``<class>/`` (copy + delete, as the MinIO console does) they train beside PNGs."""
    import io

    import numpy as np
    import tensorflow as tf

    store, prefix = datasets
    incoming, values = f"{prefix}/_incoming/pi1/run1.int8", {"dark": 10, "light": 200}
    for cls, value in values.items():
        for i in range(4):
            buf = io.BytesIO()  # the fields serve_records.Samples._write stores
            np.savez(buf, x=np.full((1, 16, 16, 3), value, np.uint8), probabilities=np.array([0.4, 0.6]),
                     index=np.int64(1), release=np.str_("run1.int8"), kind=np.str_("low"))
            store.put_bytes(f"{incoming}/{cls}-{i}.npz", buf.getvalue())
    cfg = DataConfig(source=f"s3://{store.bucket}/{prefix}", image_size=16, split=(0.6, 0.2, 0.2))
    with pytest.raises(DatasetError, match="no images under"):  # _incoming/ is never read
        data.load_splits(cfg, artifact_store)
    for cls, value in values.items():
        store.put_bytes(f"{prefix}/{cls}/photo.png", tf.io.encode_png(np.full((16, 16, 3), value, np.uint8)).numpy())
        for i in range(4):  # the person labels them
            store.put_bytes(f"{prefix}/{cls}/{cls}-{i}.npz", store.get_bytes(f"{incoming}/{cls}-{i}.npz"))
            admin_s3.delete_object(Bucket=store.bucket, Key=f"{incoming}/{cls}-{i}.npz")
    splits = data.load_splits(cfg, artifact_store)
    assert splits.class_names == ("dark", "light") and sum(splits.counts.values()) == 10
    for part in (splits.train, splits.val, splits.test):
        x, y = data.to_arrays(part)
        assert len(x) and (x.reshape(len(x), -1).mean(axis=1) == np.where(y == 0, 10.0, 200.0)).all()
