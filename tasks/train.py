"""Train step: fit the configured model, keep the best epoch (val_accuracy), save it without optimizer state."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from tasks import data, keys, models
from tasks.exceptions import TrainingError
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


def check_learned(best_val_accuracy: float, num_classes: int, margin: float) -> None:
    """Refuse a model whose best validation accuracy is not clearly above chance (1/num_classes + margin)."""
    chance = 1.0 / num_classes
    if best_val_accuracy <= chance + margin:
        raise TrainingError(
            f"the model did not learn: best val accuracy {best_val_accuracy:.4f} vs chance {chance:.4f} + margin "
            f"{margin:.2f} (train.min_accuracy_over_chance); check labels / learning rate / epochs"
        )


def _fit(ctx: StepContext, splits: data.Splits, out: Path) -> tuple[Path, dict[str, list[float]]]:
    """Train; return the best epoch's checkpoint (by val_accuracy) and the history."""
    import keras

    cfg = ctx.config
    model = models.initial_model(cfg, splits.num_classes, ctx.store)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.train.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_ds = data.batched(splits.train.cache(), cfg.data.batch_size, shuffle_seed=cfg.data.seed)
    val_ds = data.batched(splits.val.cache(), cfg.data.batch_size)
    # No steps_per_epoch: each epoch is one full pass over the train split (the seed's
    # len(ds)//batch on an already-batched dataset trained on 1/batch of the data).
    with timed(f"fit {cfg.train.epochs} epoch(s)"):
        history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs,
                            callbacks=_callbacks(ctx, out / "best.keras"), verbose=0)
    return out / "best.keras", {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _import(ctx: StepContext, splits: data.Splits, out: Path) -> tuple[Path, dict[str, list[float]]]:
    """Bring-your-own model (model.source): no training; its val accuracy stands in for the history."""
    cfg = ctx.config
    model = models.load_source(cfg, splits.num_classes, ctx.store)
    x_val, y_val = data.to_arrays(splits.val)
    val_acc = float((model.predict(x_val, batch_size=cfg.data.batch_size, verbose=0).argmax(-1) == y_val).mean())
    model.save(out / "best.keras")
    log.info("imported model: val accuracy %.4f (no training)", val_acc)
    return out / "best.keras", {"val_accuracy": [val_acc]}


def run(ctx: StepContext) -> TrainResult:
    """No inputs; returns a TrainResult. With model.source set, the given model is imported instead of trained."""
    import keras
    import tensorflow as tf

    cfg = ctx.config
    keras.utils.set_random_seed(cfg.data.seed)
    with timed("load dataset"):
        splits = data.load_splits(cfg.data, ctx.store)
    log.info("dataset %s: classes=%s counts=%s", cfg.data.source, splits.class_names, splits.counts)
    if cfg.quantize.needs_calibration:  # fail now, not after training
        data.check_calibration(splits, cfg.quantize.calibration_samples)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        best_path, hist = (_import if cfg.model.source else _fit)(ctx, splits, out)
        dataset = splits.describe()
        (out / "history.json").write_text(json.dumps(hist, indent=2))
        (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
        for name in ("history.json", "dataset.json"):  # kept even when the model is refused: they say why
            ctx.store.put_file(keys.model(ctx.run_id, name), out / name)
        best_val = max(hist.get("val_accuracy") or [0.0])
        check_learned(best_val, splits.num_classes, cfg.train.min_accuracy_over_chance)
        best = keras.models.load_model(best_path, compile=False)  # drops optimizer state
        x_test, y_test = data.to_arrays(splits.test)
        probs = best.predict(x_test, batch_size=cfg.data.batch_size, verbose=0)
        test_acc = float((probs.argmax(-1) == y_test).mean())
        best.save(out / "model.keras")  # never compiled after loading: no optimizer state inside
        model_art = ctx.store.put_file(keys.model(ctx.run_id), out / "model.keras")
    tf.keras.backend.clear_session()
    result = TrainResult(model=ctx.store.ref(model_art), keras_test_accuracy=test_acc, best_val_accuracy=best_val,
                         epochs_run=len(hist.get("loss", [])), dataset=dataset)
    return result
