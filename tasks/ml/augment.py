"""Training-time augmentation (``train.augment``), applied to TRAIN batches in the tf.data pipeline.

It never enters the model: the exported ``model.keras`` and every TFLite variant hold no augmentation layer
(Keras' Random* layers are no-ops at inference, but a converter or a device runtime should not see them at all).
The layers are seeded, and mapped sequentially, so with op determinism on a rerun draws the same transforms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.core.train_config import AugmentConfig

AUGMENT_PREFIX = "augment_"  # layer names; tests check no layer of an exported model carries it


def layers(cfg: AugmentConfig, seed: int) -> list[Any]:
    """The configured Keras preprocessing layers, in a fixed order (geometry first, then contrast)."""
    import keras

    out: list[Any] = []
    if cfg.flip != "none":
        out.append(keras.layers.RandomFlip(cfg.flip, seed=seed, name=f"{AUGMENT_PREFIX}flip"))
    if cfg.rotation > 0:
        out.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="nearest", seed=seed + 1,
                                               name=f"{AUGMENT_PREFIX}rotation"))
    if cfg.translation > 0:
        out.append(keras.layers.RandomTranslation(cfg.translation, cfg.translation, fill_mode="nearest",
                                                  seed=seed + 2, name=f"{AUGMENT_PREFIX}translation"))
    if cfg.contrast > 0:
        # Keras' RandomContrast clips to value_range; images here are raw [0, 255] pixels
        out.append(keras.layers.RandomContrast(cfg.contrast, value_range=(0, 255), seed=seed + 3,
                                               name=f"{AUGMENT_PREFIX}contrast"))
    return out


def _color(images: Any, seed: int) -> Any:
    """Per image: one of the six channel orders, and inverted (255 - x) with probability 1/2 (seeded)."""
    import tensorflow as tf

    orders = tf.constant([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
    n = tf.shape(images)[0]
    pick = tf.random.uniform([n], 0, 6, dtype=tf.int32, seed=seed + 4)
    images = tf.gather(images, tf.gather(orders, pick), axis=-1, batch_dims=1)
    invert = tf.random.uniform([n, 1, 1, 1], seed=seed + 5) < 0.5
    return tf.where(invert, 255.0 - images, images)


def batch_transform(cfg: AugmentConfig, seed: int) -> Callable[[Any, Any], tuple[Any, Any]] | None:
    """A ``(images, labels) -> (augmented images, labels)`` map for batched TRAIN data; None when all off."""
    if not cfg.active:
        return None
    import tensorflow as tf

    chain = layers(cfg, seed)

    def apply(images: Any, labels: Any) -> tuple[Any, Any]:
        for layer in chain:
            images = layer(images, training=True)
        if cfg.color and images.shape[-1] == 3:
            images = _color(images, seed)
        return tf.clip_by_value(images, 0.0, 255.0), labels

    return apply
