"""Train step: fit the configured model, keep the best epoch (val_accuracy), save it without optimizer state."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from tasks import data, keys, models
from tasks.results import TrainResult
from tasks.step import StepContext, timed

log = logging.getLogger(__name__)


def _callbacks(ctx: StepContext, checkpoint: Path) -> list[Any]:
    import keras

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()) if isinstance(v, float))
            log.info("epoch %d/%d %s", epoch + 1, ctx.config.train.epochs, shown)

    t = ctx.config.train
    return [
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor="val_accuracy", mode="max", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=t.reduce_lr_factor,
                                          patience=t.reduce_lr_patience, min_lr=t.min_learning_rate),
        Progress(),
    ]


def run(ctx: StepContext) -> TrainResult:
    import keras
    import tensorflow as tf

    cfg = ctx.config
    keras.utils.set_random_seed(cfg.data.seed)
    with timed("load dataset"):
        splits = data.load_splits(cfg.data, ctx.store)
    log.info("dataset %s: classes=%s counts=%s", cfg.data.source, splits.class_names, splits.counts)
    model = models.initial_model(cfg, splits.num_classes, ctx.store)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=cfg.train.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    train_ds = data.batched(splits.train.cache(), cfg.data.batch_size, shuffle_seed=cfg.data.seed)
    val_ds = data.batched(splits.val.cache(), cfg.data.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        # No steps_per_epoch: each epoch is one full pass over the train split (the seed's
        # len(ds)//batch on an already-batched dataset trained on 1/batch of the data).
        with timed(f"fit {cfg.train.epochs} epoch(s)"):
            history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs,
                                callbacks=_callbacks(ctx, out / "best.keras"), verbose=0)
        best = keras.models.load_model(out / "best.keras", compile=False)  # drops optimizer state
        x_test, y_test = data.to_arrays(splits.test)
        probs = best.predict(x_test, batch_size=cfg.data.batch_size, verbose=0)
        test_acc = float((probs.argmax(-1) == y_test).mean())
        best.save(out / "model.keras")  # never compiled after loading: no optimizer state inside
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        dataset = splits.describe()
        (out / "history.json").write_text(json.dumps(hist, indent=2))
        (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
        arts = [ctx.store.put_file(keys.model(ctx.run_id, name), out / name)
                for name in ("model.keras", "history.json", "dataset.json")]
    tf.keras.backend.clear_session()
    log.info("best val_accuracy=%.4f test accuracy (Keras)=%.4f", max(hist.get("val_accuracy", [0.0])), test_acc)
    return TrainResult(model=ctx.store.ref(arts[0]), keras_test_accuracy=float(test_acc),
                       best_val_accuracy=max(hist.get("val_accuracy", [0.0])), epochs_run=len(hist.get("loss", [])),
                       dataset=dataset)
