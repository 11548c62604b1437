"""Keras model from config: a backbone + the seed's head. Inputs are raw pixels in [0, 255]."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from tasks.config import PipelineConfig
from tasks.exceptions import ConfigError
from tasks.storage import ArtifactStore

log = logging.getLogger(__name__)


def _backbone(name: str, shape: tuple[int, int, int], weights: str | None) -> tuple[Any, Any]:
    """Return (preprocessing layer or None, feature extractor) for a named backbone."""
    import keras

    if name == "efficientnetb0":  # EfficientNet rescales and normalises internally
        return None, keras.applications.EfficientNetB0(include_top=False, weights=weights, input_shape=shape,
                                                        pooling="avg")
    if name == "mobilenetv2":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0), keras.applications.MobileNetV2(
            include_top=False, weights=weights, input_shape=shape, pooling="avg")
    tiny = keras.Sequential(
        [
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name="tiny_backbone",
    )
    return keras.layers.Rescaling(1 / 255.0), tiny


def build_model(cfg: PipelineConfig, num_classes: int) -> Any:
    """Backbone, then Dense(512)-BN-Dense(64)-Dropout-softmax (the seed's head, sizes configurable)."""
    import keras

    size, channels = cfg.data.image_size, cfg.data.channels
    if cfg.model.weights == "imagenet" and channels != 3:
        raise ConfigError("model.weights='imagenet' needs data.channels=3")
    weights = "imagenet" if cfg.model.weights == "imagenet" else None
    try:
        prep, base = _backbone(cfg.model.backbone, (size, size, channels), weights)
    except Exception as exc:  # noqa: BLE001 - keras raises URL/OS errors when weights cannot be fetched
        raise ConfigError(
            f"model.weights='imagenet' for {cfg.model.backbone}: the ImageNet weights could not be loaded ({exc}). "
            "Put the Keras weights file in ~/.keras/models/ on an offline machine, or use weights='none'"
        ) from exc
    base.trainable = cfg.model.train_backbone or weights is None
    inputs = keras.Input((size, size, channels), name="image")
    x = prep(inputs) if prep is not None else inputs
    x = base(x, training=False) if weights else base(x)
    units1, units2 = cfg.model.head_units
    x = keras.layers.Dense(units1, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dense(units2, activation="relu")(x)
    x = keras.layers.Dropout(cfg.model.dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"edgeops_{cfg.model.backbone}")


def initial_model(cfg: PipelineConfig, num_classes: int, store: ArtifactStore | None) -> Any:
    """Fresh model, or a warm start from a previous run's ``.keras`` when model.weights is an s3:// URI."""
    if not cfg.model.weights.startswith("s3://"):
        return build_model(cfg, num_classes)
    import keras

    if store is None:
        raise ConfigError("model.weights is an s3:// URI but no object store is configured")
    with tempfile.TemporaryDirectory() as tmp:
        path = store.fetch_uri(cfg.model.weights, Path(tmp) / "start.keras")
        model = keras.models.load_model(path, compile=False)
    want = (None, cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    if tuple(model.input_shape) != want or model.output_shape[-1] != num_classes:
        raise ConfigError(
            f"model.weights={cfg.model.weights}: input {model.input_shape} / {model.output_shape[-1]} classes do not "
            f"match this config ({want} / {num_classes} classes)"
        )
    log.info("warm start from %s", cfg.model.weights)
    return model
