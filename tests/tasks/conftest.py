"""Small in-memory datasets and models for unit tests (real TF/LiteRT, tiny sizes)."""

from __future__ import annotations

import pytest

from tasks.core.config import load_config


def make_splits(size: int = 16, per_split: tuple[int, int, int] = (40, 12, 12), classes: int = 3):
    """Splits whose images encode their split: train pixels are in [0, 85), val [85, 170), test [170, 255]."""
    import numpy as np
    import tensorflow as tf

    from tasks.ml.data import Splits

    rng = np.random.RandomState(0)
    parts = []
    for i, n in enumerate(per_split):
        x = rng.uniform(85 * i, 85 * i + 84, size=(n, size, size, 3)).astype("float32")
        y = (np.arange(n) % classes).astype("int32")
        parts.append(tf.data.Dataset.from_tensor_slices((x, y)))
    counts = dict(zip(("train", "val", "test"), per_split, strict=True))
    return Splits(*parts, class_names=tuple(str(c) for c in range(classes)), counts=counts, info={"source": "mem"})


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_config("tiny", {"data.image_size": 16})


@pytest.fixture(scope="session")
def tiny_saved_model(tmp_path_factory, tiny_cfg):
    """A trained-for-one-step tiny model exported as SavedModel (the converter's input)."""
    import numpy as np

    from tasks.ml.convert import export_saved_model
    from tasks.ml.models import build_model

    model = build_model(tiny_cfg, num_classes=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.RandomState(1).uniform(0, 255, size=(8, 16, 16, 3)).astype("float32")
    model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    out = tmp_path_factory.mktemp("model")
    model.save(out / "model.keras")
    return export_saved_model(out / "model.keras", out)
