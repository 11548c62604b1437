"""One way to make a TensorFlow process reproducible, shared by every step that trains (train, and the quantize
step's tfmot fine-tuning of ``pruned`` and ``qat_int8``).

Seeds Python, NumPy and TF through the ``utils.set_random_seed`` of the Keras the caller trains with: Keras 3's
also seeds its own global SeedGenerator (layer seeds drawn with ``seed=None``); tf-keras' seeds the same three
libraries. The tfmot path must pass ``legacy_keras=True``: it may not import Keras 3 once it has switched to
tf-keras (see tasks/ml/tfmot_variants.py). Input order is fixed elsewhere: sorted listing, seeded split and
shuffle, sequential maps.
"""

from __future__ import annotations


def seed_everything(seed: int, deterministic: bool, legacy_keras: bool = False) -> bool:
    """Seed python, numpy and TF; with ``deterministic``, also make every TF op deterministic (process-wide; ops
    with no deterministic kernel then raise instead of varying). Returns whether op determinism is on.

    Call it right before the ops to reproduce are created: it also resets TF's per-op seed counter.
    """
    import tensorflow as tf

    if legacy_keras:
        import tf_keras as keras
    else:
        import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    return deterministic
