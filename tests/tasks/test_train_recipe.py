"""The training recipe: reproducible training, augmentation outside the model, an LR schedule a small
validation split cannot collapse, and backbone 'auto'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.core.exceptions import ConfigError
from tasks.core.train_config import REFERENCE_VAL, scaled_patience
from tasks.ml.models import AUTO_CNN_BELOW, backbone_of, build_model, resolve_backbone

REPO = Path(__file__).resolve().parents[2]
# one training in a fresh process (op determinism is process-wide): tiny CNN, every augmentation on, in-memory
# data whose classes are learnable (stripes); prints the test probabilities and the saved model's layers
CHILD = """
import hashlib, json, sys, tempfile
from pathlib import Path
import numpy as np
import tensorflow as tf
from tasks.core.config import load_config
from tasks.core.step import StepContext
from tasks.ml import data
from tasks.ml.data import Splits
from tasks.steps import train
from tests.tasks.test_models import _stripes

det = sys.argv[1] == "1"
cfg = load_config("tiny", {"data.image_size": 16, "train.epochs": 4, "train.deterministic": det,
                           "train.augment.flip": "horizontal", "train.augment.rotation": 0.05,
                           "train.augment.translation": 0.1, "train.augment.contrast": 0.2,
                           "train.augment.color": True})
parts = [tf.data.Dataset.from_tensor_slices(_stripes(n, 16, seed)) for n, seed in ((96, 1), (30, 2), (60, 3))]
splits = Splits(*parts, class_names=("h", "v", "flat"), counts={"train": 96, "val": 30, "test": 60})
on = train.seed_everything(cfg.data.seed, det)
with tempfile.TemporaryDirectory() as tmp:
    best, hist, _ = train._fit(StepContext(cfg, "recipe-test", None), splits, Path(tmp))
    import keras
    model = keras.models.load_model(best, compile=False)
x, y = data.to_arrays(splits.test)
probs = model.predict(x, verbose=0)
layers = [(layer.name, type(layer).__name__) for layer in model._flatten_layers(include_self=False, recursive=True)]
print(json.dumps({"on": on, "pred": probs.argmax(-1).tolist(), "acc": float((probs.argmax(-1) == y).mean()),
                  "probs": hashlib.sha256(probs.tobytes()).hexdigest(), "layers": layers}))
"""


def _train_child(deterministic: bool) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", CHILD, "1" if deterministic else "0"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def twice() -> tuple[dict, dict]:
    return _train_child(True), _train_child(True)


def test_training_twice_gives_the_same_predictions_on_every_test_image(twice):
    first, second = twice
    assert first["on"] and second["on"]
    assert first["pred"] == second["pred"]  # image by image
    assert first["probs"] == second["probs"]  # and bit for bit
    assert first["acc"] >= 0.9  # and the recipe learned the stripes, augmentation and all


def test_the_saved_model_holds_no_augmentation_layer(twice):
    names = [name for name, _ in twice[0]["layers"]]
    kinds = {kind for _, kind in twice[0]["layers"]}
    assert not [n for n in names if n.startswith("augment_")]
    assert not {"RandomFlip", "RandomRotation", "RandomTranslation", "RandomContrast"} & kinds
    assert "tiny_conv1" in names  # the model itself is there


def test_augmentation_changes_training_batches_only():
    import numpy as np

    from tasks.core.train_config import AugmentConfig
    from tasks.ml.augment import batch_transform

    assert batch_transform(AugmentConfig(), 0) is None
    apply = batch_transform(AugmentConfig(flip="horizontal", rotation=0.1, translation=0.1, contrast=0.3,
                                          color=True), 0)
    x = np.random.RandomState(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    out, labels = apply(x, np.arange(4))
    out = np.asarray(out)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255 and not np.allclose(out, x)
    assert list(np.asarray(labels)) == [0, 1, 2, 3]


def test_auto_picks_a_compact_cnn_for_few_images_per_class():
    assert resolve_backbone("auto", "none", 1074, 10) == "cnn"  # the digits demo: ~107 per class
    assert resolve_backbone("auto", "none", 3 * 400, 3) == "cnn"
    assert resolve_backbone("auto", "none", 10 * AUTO_CNN_BELOW, 10) == "mobilenetv2"
    assert resolve_backbone("auto", "imagenet", 100, 2) == "mobilenetv2"  # pretrained features need few images
    assert resolve_backbone("tiny", "none", 10, 2) == "tiny"


def test_cnn_backbone_has_named_conv_bn_blocks():
    cfg = load_config("demo", {"model.backbone": "cnn", "model.alpha": 1.0, "data.image_size": 32})
    model = build_model(cfg, num_classes=4)
    names = {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)}
    assert {"cnn_conv1", "cnn_bn1", "cnn_conv4", "cnn_bn4", "cnn_global_max", "probs"} <= names
    assert model.name == "edgeops_cnn" and backbone_of(names) == "cnn"
    assert model.output_shape == (None, 4)


def test_patience_grows_on_a_small_validation_split():
    assert scaled_patience(2, REFERENCE_VAL) == 2
    assert scaled_patience(2, 5000) == 2
    assert scaled_patience(2, 176) == 4  # the digits demo's val split
    assert scaled_patience(2, 36) == 8  # 360 images at 10 %: val noise alone is ~8 pp
    assert scaled_patience(0, 10) == 0  # off stays off


def test_the_learning_rate_has_a_floor():
    t = load_config("demo").train
    assert t.floor_learning_rate == pytest.approx(t.learning_rate * t.lr_floor)
    assert load_config("demo", {"train.lr_floor": 0.0, "train.min_learning_rate": 1e-6}).train.floor_learning_rate \
        == pytest.approx(1e-6)
    tiny_lr = load_config("demo", {"train.learning_rate": 1e-9}).train  # the form accepts any rate > 0
    assert tiny_lr.floor_learning_rate == pytest.approx(1e-9)  # the floor never rises above the rate itself


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"train.augment.flip": "diagonal"}, "train.augment.flip"), ({"train.augment.rotation": 0.9}, "rotation"),
     ({"train.min_learning_rate": -0.01}, "min_learning_rate"), ({"train.lr_floor": 1.0}, "lr_floor"),
     ({"train.early_stopping_patience": -1}, "early_stopping_patience"),
     ({"model.backbone": "cnn", "model.weights": "imagenet", "model.alpha": 1.0}, "no pretrained weights"),
     ({"train.augment.zoom": 0.1}, "unknown key")],
)
def test_recipe_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("demo", overrides)


def test_demo_is_deterministic_auto_with_augmentation_and_keeps_tfmot_modes():
    cfg = load_config("demo")
    assert cfg.model.backbone == "auto" and cfg.train.deterministic and cfg.train.augment.active
    assert {"pruned", "qat_int8"} <= set(cfg.quantize.modes)  # 'auto' resolves to a backbone build_flat rebuilds
