"""Dataset loading through TFDS (with TFDS's own mock data) and the split arithmetic."""

from __future__ import annotations

import pytest

from tasks.core.config import DataConfig
from tasks.core.exceptions import DatasetError
from tasks.ml import data


def test_split_sizes_are_seed_fractions():
    assert data.split_sizes(1000, (0.7, 0.2, 0.1)) == (700, 200, 100)
    assert sum(data.split_sizes(1797, (0.7, 0.2, 0.1))) == 1797


def test_tfds_source_with_tfds_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        splits = data.load_splits(DataConfig(source="tfds:cats_vs_dogs", image_size=32))
        x, y = data.to_arrays(splits.test)
    assert splits.class_names == ("cat", "dog")
    assert x.shape == (12, 32, 32, 3) and x.dtype == "float32"
    assert 0.0 <= x.min() and x.max() <= 255.0
    assert set(y.tolist()) <= {0, 1}
    assert splits.info["slices"] == ["train[:70%]", "train[70%:90%]", "train[90%:]"]


def test_unknown_tfds_dataset_is_a_dataset_error():
    with pytest.raises(DatasetError, match="TFDS has no dataset 'no_such_dataset'"):
        data.load_splits(DataConfig(source="tfds:no_such_dataset"))


def test_batched_keeps_every_example():
    from tests.tasks.conftest import make_splits

    splits = make_splits(per_split=(50, 5, 5))
    batches = list(data.batched(splits.train, 16, shuffle_seed=1).as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]  # one epoch = the whole train split


def test_more_calibration_samples_than_train_images_is_refused_before_training():
    from tasks.core.exceptions import ConfigError
    from tasks.ml.data import check_calibration
    from tests.tasks.conftest import make_splits

    splits = make_splits(per_split=(40, 12, 12))
    check_calibration(splits, 40)
    with pytest.raises(ConfigError, match="calibration_samples=41 but the train split has only 40"):
        check_calibration(splits, 41)


def test_stratified_split_keeps_every_class_in_every_split_in_proportion():
    labels = [0] * 300 + [1] * 60 + [2] * 10  # unbalanced on purpose
    train, val, test = data.stratified_split(labels, (0.6, 0.1, 0.3), seed=42)
    assert sorted(train + val + test) == list(range(len(labels)))
    for part, share in ((train, 0.6), (test, 0.3)):
        counts = [sum(labels[i] == c for i in part) for c in range(3)]
        assert counts[0] == pytest.approx(300 * share, abs=1) and counts[1] == pytest.approx(60 * share, abs=1)
    assert sum(labels[i] == 2 for i in test) >= 3  # the rare class still reaches the test split
    assert data.stratified_split(labels, (0.6, 0.1, 0.3), seed=42) == (train, val, test)  # seeded
    assert {labels[i] for i in test[:20]} != {0}  # shuffled: the device sample (a prefix) mixes classes
