"""The ``train`` section of the pipeline config: optimiser schedule, early stopping, determinism, augmentation.

Kept apart from tasks/core/config.py (which assembles every section) because the training recipe has the most
knobs, and each one's reason belongs next to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tasks.core.exceptions import ConfigError

FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
# validation split size at which the configured patiences apply as written; smaller splits are noisier
# (the standard error of an accuracy grows as 1/sqrt(n)), so their patiences grow by sqrt(REFERENCE_VAL / n)
REFERENCE_VAL = 500


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class AugmentConfig:
    """Random image transforms applied to TRAIN batches in the tf.data pipeline, never inside the model.

    The exported model therefore holds no augmentation layer. All off by default: a digit is not flip-invariant,
    a photo of a cat is. Factors follow Keras' preprocessing layers: rotation is a fraction of a full turn,
    translation a fraction of the image side, contrast a +/- fraction.
    """

    flip: str = "none"  # none | horizontal | vertical | horizontal_and_vertical
    rotation: float = 0.0
    translation: float = 0.0
    contrast: float = 0.0
    # random channel order and, for half the images, inverted pixels: for classes that do not depend on colour
    # (shapes in any colour on any background); without it a small dataset's model memorises the colours
    color: bool = False

    @property
    def active(self) -> bool:
        return self.flip != "none" or self.color or any(v > 0 for v in (self.rotation, self.translation,
                                                                         self.contrast))

    def __post_init__(self) -> None:
        _require(self.flip in FLIPS, f"train.augment.flip={self.flip!r}: choose one of {FLIPS}")
        _require(0 <= self.rotation <= 0.5, f"train.augment.rotation={self.rotation}: a fraction of a turn, 0..0.5")
        _require(0 <= self.translation <= 0.5, f"train.augment.translation={self.translation}: must be 0..0.5")
        _require(0 <= self.contrast < 1, f"train.augment.contrast={self.contrast}: must be in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    learning_rate: float = 1e-4
    reduce_lr_factor: float = 0.2
    reduce_lr_patience: int = 2  # epochs without val_loss improvement, at REFERENCE_VAL validation images
    min_learning_rate: float = 1e-7  # absolute floor of the schedule
    # relative floor: the schedule never goes below learning_rate * lr_floor, so a noisy validation split cannot
    # take the learning rate to ~0 and freeze training (a 36-image val split did that by epoch 19)
    lr_floor: float = 0.05
    # stop after this many epochs without a better val_accuracy (at REFERENCE_VAL validation images; scaled like
    # reduce_lr_patience); 0 = never stop early. The best epoch's weights are what the step keeps either way.
    early_stopping_patience: int = 0
    # best val accuracy must exceed 1/num_classes by this much, else TrainingError (the model did not learn)
    min_accuracy_over_chance: float = 0.1
    # seeds + tf.config.experimental.enable_op_determinism(): same data, config, code and machine give the same
    # model, prediction for prediction (costs some speed; see benchmarks/determinism.py)
    deterministic: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        _require(0 <= self.min_accuracy_over_chance < 1, "train.min_accuracy_over_chance: must be in [0, 1)")
        _require(1 <= self.epochs <= 1000, f"train.epochs={self.epochs}: must be 1..1000")
        _require(0 < self.learning_rate < 1, f"train.learning_rate={self.learning_rate}: must be in (0, 1)")
        _require(0 < self.reduce_lr_factor < 1, "train.reduce_lr_factor: must be in (0, 1)")
        _require(self.reduce_lr_patience >= 0, "train.reduce_lr_patience: must be >= 0")
        _require(self.min_learning_rate >= 0, f"train.min_learning_rate={self.min_learning_rate}: must be >= 0")
        _require(0 <= self.lr_floor < 1, f"train.lr_floor={self.lr_floor}: a fraction of learning_rate, in [0, 1)")
        _require(self.early_stopping_patience >= 0, "train.early_stopping_patience: must be >= 0 (0 = off)")

    @property
    def floor_learning_rate(self) -> float:
        return min(self.learning_rate, max(self.min_learning_rate, self.learning_rate * self.lr_floor))


def scaled_patience(patience: int, n_val: int) -> int:
    """``patience`` epochs at REFERENCE_VAL validation images, more on a smaller (noisier) split, never less."""
    if patience <= 0 or n_val >= REFERENCE_VAL:
        return patience
    return math.ceil(patience * math.sqrt(REFERENCE_VAL / max(1, n_val)))
