"""tfmot variants: ``pruned`` (magnitude pruning) and ``qat_int8`` (quantization-aware training).

tfmot 0.8 works only with tf-keras (Keras 2): importing it sets ``TF_USE_LEGACY_KERAS=1`` for the whole process,
and it cannot wrap a Keras 3 model, a nested model, a ``Rescaling`` layer (QAT) or BatchNormalization after Dense.
So, in the quantize step's own process (one mode per process):

1. read the trained Keras 3 model's weights by layer name and a few reference outputs (Keras 3 runs only here);
2. switch to tf-keras and rebuild the SAME architecture flat (the application backbone built on the rescaled
   input tensor, so its layers join the outer graph), with the head's BatchNormalization folded into the next
   Dense (it follows a ReLU, so it is an affine map of Dense2's input: exact in inference mode);
3. copy the weights, check the rebuilt model reproduces the reference outputs, seed (tasks/ml/seeding.py, as the
   train step does), fine-tune with tfmot, convert.

Nothing may import Keras 3 code after step 1 in the same process: ``run`` is the only entry point.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.core import modes
from tasks.core.config import TFMOT_BACKBONES, PipelineConfig
from tasks.core.exceptions import TrainingError
from tasks.ml.convert import convert
from tasks.ml.models import CNN_FILTERS, CNN_GAP, HEAD_LAYERS, RESCALE, TINY_LAYERS, backbone_of, cnn_layer_names
from tasks.ml.seeding import seed_everything

log = logging.getLogger(__name__)
PRUNABLE = ("Conv2D", "Dense")  # tfmot registers DepthwiseConv2D with no prunable weights


# --- step 1: Keras 3 side ------------------------------------------------------------------------------------
def read_keras3(keras_path: Path, probe: Any) -> tuple[dict[str, list[Any]], Any]:
    """Weights of every weighted leaf layer by name, and the model's outputs on ``probe``."""
    import keras

    model = keras.models.load_model(keras_path, compile=False)
    weights = {layer.name: layer.get_weights()
               for layer in model._flatten_layers(include_self=False, recursive=True)
               if not isinstance(layer, keras.Model) and layer.weights}
    return weights, model.predict(probe, verbose=0)


# --- step 2: tf-keras side -----------------------------------------------------------------------------------
def _legacy_keras() -> Any:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tf_keras

    return tf_keras


def build_flat(cfg: PipelineConfig, num_classes: int, backbone: str = "") -> Any:
    """The models.build_model architecture in tf-keras, flat, with the head BN folded away.

    ``backbone`` is the one the trained model was built with (what 'auto' resolved to); empty = the config's.
    """
    tfk = _legacy_keras()
    backbone = backbone or cfg.model.backbone
    backbone = "cnn" if backbone == "auto" else backbone
    size, ch = cfg.data.image_size, cfg.data.channels
    inputs = tfk.Input((size, size, ch), name="image")
    scale, offset = RESCALE[backbone]
    x = tfk.layers.Rescaling(scale, offset=offset, name="rescale")(inputs)
    if backbone == "mobilenetv2":
        base = tfk.applications.MobileNetV2(include_top=False, weights=None, input_tensor=x, alpha=cfg.model.alpha,
                                            pooling="avg")
        x = base.output
    elif backbone == "cnn":
        for i, filters in enumerate(CNN_FILTERS, start=1):
            conv, bn, relu, pool = cnn_layer_names(i)
            x = tfk.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=conv)(x)
            x = tfk.layers.BatchNormalization(name=bn)(x)
            x = tfk.layers.ReLU(name=relu)(x)
            x = tfk.layers.MaxPooling2D(name=pool)(x)
        x = tfk.layers.GlobalMaxPooling2D(name=CNN_GAP)(x)
    else:
        conv1, pool, conv2, gap = TINY_LAYERS
        x = tfk.layers.Conv2D(16, 3, padding="same", activation="relu", name=conv1)(x)
        x = tfk.layers.MaxPooling2D(name=pool)(x)
        x = tfk.layers.Conv2D(32, 3, padding="same", activation="relu", name=conv2)(x)
        x = tfk.layers.GlobalAveragePooling2D(name=gap)(x)
    d1, _bn, d2, drop, probs = HEAD_LAYERS
    units1, units2 = cfg.model.head_units
    x = tfk.layers.Dense(units1, activation="relu", name=d1)(x)
    x = tfk.layers.Dense(units2, activation="relu", name=d2)(x)  # takes the folded BN
    x = tfk.layers.Dropout(cfg.model.dropout, name=drop)(x)
    outputs = tfk.layers.Dense(num_classes, activation="softmax", name=probs)(x)
    model = tfk.Model(inputs, outputs, name=f"edgeops_{backbone}_flat")
    for layer in model.layers:  # tf-keras' 0.999 would keep pre-pruning statistics through the short fine-tune
        if isinstance(layer, tfk.layers.BatchNormalization):
            layer.momentum = cfg.model.bn_momentum
    return model


def fold_head_bn(weights: dict[str, list[Any]], epsilon: float = 1e-3) -> dict[str, list[Any]]:
    """Fold ``head_bn`` (after Dense1's ReLU) into ``head_dense2``: W2' = diag(a) W2, b2' = b2 + c W2."""
    import numpy as np

    _d1, bn, d2, _drop, _probs = HEAD_LAYERS
    gamma, beta, mean, var = weights[bn]
    a = gamma / np.sqrt(var + epsilon)
    c = beta - mean * a
    w2, b2 = weights[d2]
    out = {k: v for k, v in weights.items() if k != bn}
    out[d2] = [a[:, None] * w2, b2 + c @ w2]
    return out


def copy_weights(model: Any, weights: dict[str, list[Any]]) -> None:
    """Set every weighted layer of the flat model from the same-named Keras 3 layer; refuse any gap."""
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in weights]
    if missing:
        raise TrainingError(f"tfmot rebuild: no trained weights for layer(s) {missing[:5]}: the architectures differ")
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])


# --- step 3: tfmot ------------------------------------------------------------------------------------------
def prune(model: Any, train_ds: Any, steps: int, sparsity: float, epochs: int, lr: float, min_weights: int) -> Any:
    """Magnitude pruning of Conv/Depthwise/Dense kernels, polynomial decay 0 -> ``sparsity``; stripped."""
    import tensorflow_model_optimization as tfmot

    tfk = _legacy_keras()
    # reach the final sparsity on a pruning turn at ~70 % of the fine-tuning, then train on with the final mask
    total = steps * epochs
    frequency = max(1, total // 10)
    end_step = frequency * max(1, (total * 7 // 10) // frequency)
    schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
                                                    end_step=end_step, frequency=frequency)

    def wrap(layer: Any) -> Any:
        if _prunable(layer, min_weights):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    pruned = tfk.models.clone_model(model, clone_function=wrap)  # wrappers hold the trained layers themselves
    pruned.compile(optimizer=tfk.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(train_ds, epochs=epochs, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], verbose=0)
    return tfmot.sparsity.keras.strip_pruning(pruned)


def quantize_aware(model: Any, train_ds: Any, epochs: int, lr: float) -> Any:
    """QAT of every layer but ``rescale`` (tfmot has no Rescaling support; int8 calibration covers it)."""
    import tensorflow_model_optimization as tfmot

    tfk = _legacy_keras()
    q = tfmot.quantization.keras

    def annotate(layer: Any) -> Any:
        return layer if layer.name == "rescale" else q.quantize_annotate_layer(layer)

    annotated = tfk.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    qat = q.quantize_apply(annotated)
    qat.compile(optimizer=tfk.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    qat.fit(train_ds, epochs=epochs, verbose=0)
    return qat


def _prunable(layer: Any, min_weights: int) -> bool:
    return type(layer).__name__ in PRUNABLE and layer.get_weights()[0].size >= min_weights


def sparsity_of(model: Any, min_weights: int = 0) -> float:
    """Share of zeros across the kernels of at least ``min_weights`` weights (the pruned ones)."""
    zeros = total = 0
    for layer in model.layers:
        if _prunable(layer, min_weights):
            kernel = layer.get_weights()[0]
            zeros, total = zeros + int((kernel == 0).sum()), total + kernel.size
    return zeros / total if total else 0.0


def _finetune_prune(cfg: PipelineConfig, flat: Any, train_ds: Any, steps: int) -> tuple[Any, dict[str, Any]]:
    q = cfg.quantize
    model = prune(flat, train_ds, steps, q.prune_sparsity, q.finetune_epochs, q.finetune_learning_rate,
                  q.prune_min_weights)
    return model, {"sparsity": sparsity_of(model, q.prune_min_weights), "kernel_sparsity_all": sparsity_of(model)}


def _finetune_qat(cfg: PipelineConfig, flat: Any, train_ds: Any, steps: int) -> tuple[Any, dict[str, Any]]:
    return quantize_aware(flat, train_ds, cfg.quantize.finetune_epochs, cfg.quantize.finetune_learning_rate), {}


# tasks/core/modes.py names a tfmot mode's fine-tuning by one of these keys: (config, flat model, train data,
# steps per epoch) -> (fine-tuned tf-keras model, facts); the mode table's converter settings convert the result
FINETUNES: dict[str, Callable[[PipelineConfig, Any, Any, int], tuple[Any, dict[str, Any]]]] = {
    "prune": _finetune_prune,
    "qat": _finetune_qat,
}


def build_variant(cfg: PipelineConfig, mode: str, keras_path: Path, splits: Any, out_dir: Path,
                  representative: Callable[[], Iterator[list[Any]]]) -> tuple[bytes, dict[str, Any]]:
    """The whole tfmot path for one mode; returns the TFLite bytes and facts (sparsity, fine-tune accuracy)."""
    import numpy as np
    import tensorflow as tf

    from tasks.ml import data

    entry = modes.get(mode)
    if entry.tfmot not in FINETUNES or cfg.model.backbone not in TFMOT_BACKBONES:  # PipelineConfig refuses these
        raise TrainingError(f"tfmot mode {mode!r} with backbone {cfg.model.backbone!r} is not supported")
    probe = np.concatenate([img for img, in _take(representative, 8)])
    weights, reference = read_keras3(keras_path, probe)  # last Keras 3 code of this process
    flat = build_flat(cfg, splits.num_classes, backbone_of(set(weights)))
    copy_weights(flat, fold_head_bn(weights))
    diff = float(np.abs(flat.predict(probe, verbose=0) - reference).max())
    if diff > 1e-3:
        raise TrainingError(f"tfmot rebuild does not reproduce the trained model (max output diff {diff:.2e})")
    train_ds = data.batched(splits.train.cache(), cfg.data.batch_size, shuffle_seed=cfg.data.seed)
    steps = -(-splits.counts["train"] // cfg.data.batch_size)
    # seeded like the train step (same seed, same train.deterministic): dropout and the quantizers' variables
    # draw the same values, so two quantize runs of one trained model give the same variant file
    deterministic = seed_everything(cfg.data.seed, cfg.train.deterministic, legacy_keras=True)
    model, facts = FINETUNES[entry.tfmot](cfg, flat, train_ds, steps)
    settings = entry.settings(cfg.quantize.int8_io_dtype)
    saved = out_dir / f"{mode}_saved_model"
    tf.saved_model.save(model, str(saved))
    blob = convert(saved, settings, representative if settings.needs_representative_data else None)
    return blob, {"rebuild_max_diff": diff, "deterministic": deterministic, **facts}


def _take(representative: Callable[[], Iterator[list[Any]]], n: int) -> Iterator[list[Any]]:
    for i, item in enumerate(representative()):
        if i >= n:
            return
        yield item
