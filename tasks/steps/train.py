"""Train step: fit the configured model, keep the best epoch (val_accuracy), save it without optimizer state."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from tasks.core import keys
from tasks.core.exceptions import TrainingError
from tasks.core.keys import source_kind
from tasks.core.results import SourceModel, TrainResult
from tasks.core.step import StepContext, timed
from tasks.core.train_config import scaled_patience
from tasks.ml import augment, data, models, saved_model
from tasks.ml.model_source import check_io
from tasks.ml.seeding import seed_everything

log = logging.getLogger(__name__)
Imported = tuple[Path, dict[str, list[float]], SourceModel | None]  # best model, history, the imported source


def _callbacks(ctx: StepContext, checkpoint: Path, n_val: int) -> list[Any]:
    """Keep the best epoch (val_accuracy); halve the LR on a plateau down to a floor; stop early if asked.

    Patiences grow on a small validation split (tasks/core/train_config.py scaled_patience): its noise alone
    would otherwise read as a plateau every other epoch and take the learning rate to the floor.
    """
    import keras

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            shown = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()) if isinstance(v, float))
            log.info("epoch %d/%d %s", epoch + 1, ctx.config.train.epochs, shown)

    t = ctx.config.train
    lr_patience = scaled_patience(t.reduce_lr_patience, n_val)
    stop_patience = scaled_patience(t.early_stopping_patience, n_val)
    log.info("schedule: LR %.2g, x%.2g after %d flat epoch(s), floor %.2g; early stop after %s (val split %d)",
             t.learning_rate, t.reduce_lr_factor, lr_patience, t.floor_learning_rate,
             f"{stop_patience} epoch(s)" if stop_patience else "never", n_val)
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(checkpoint), monitor="val_accuracy", mode="max", save_best_only=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=t.reduce_lr_factor, patience=lr_patience,
                                          min_lr=t.floor_learning_rate),
        Progress(),
    ]
    if stop_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=stop_patience,
                                                       restore_best_weights=True))
    return callbacks


def check_learned(best_val_accuracy: float, num_classes: int, margin: float) -> None:
    """Refuse a model whose best validation accuracy is not clearly above chance (1/num_classes + margin)."""
    chance = 1.0 / num_classes
    if best_val_accuracy <= chance + margin:
        raise TrainingError(
            f"the model did not learn: best val accuracy {best_val_accuracy:.4f} vs chance {chance:.4f} + margin "
            f"{margin:.2f} (train.min_accuracy_over_chance); check labels / learning rate / epochs"
        )


def _fit(ctx: StepContext, splits: data.Splits, out: Path) -> Imported:
    """Train; return the best epoch's checkpoint (by val_accuracy) and the history."""
    import keras

    cfg = ctx.config
    backbone = models.resolve_backbone(cfg.model.backbone, cfg.model.weights, splits.counts["train"],
                                       splits.num_classes)
    log.info("backbone %s (model.backbone=%s, %d train images in %d classes)", backbone, cfg.model.backbone,
             splits.counts["train"], splits.num_classes)
    model = models.initial_model(cfg, splits.num_classes, ctx.store, backbone)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.train.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_ds = data.batched(splits.train.cache(), cfg.data.batch_size, shuffle_seed=cfg.data.seed,
                            transform=augment.batch_transform(cfg.train.augment, cfg.data.seed))
    val_ds = data.batched(splits.val.cache(), cfg.data.batch_size)
    # No steps_per_epoch: each epoch is one full pass over the train split (the seed's
    # len(ds)//batch on an already-batched dataset trained on 1/batch of the data).
    with timed(f"fit {cfg.train.epochs} epoch(s)"):
        history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs,
                            callbacks=_callbacks(ctx, out / "best.keras", splits.counts["val"]), verbose=0)
    return out / "best.keras", {k: [float(v) for v in vals] for k, vals in history.history.items()}, None


def _import(ctx: StepContext, splits: data.Splits, out: Path) -> Imported:
    """Bring-your-own model (model.source): no training; its val accuracy stands in for the history."""
    cfg = ctx.config
    x_val, y_val = data.to_arrays(splits.val)
    if source_kind(cfg.model.source) == "saved_model":
        model_dir, source = saved_model.fetch(ctx.store, cfg.model.source, out / "saved_model")
        check_io(saved_model.io_of(model_dir, cfg.model.source), cfg, splits.num_classes,
                 f"model.source={cfg.model.source}")
        val_acc = saved_model.accuracy(model_dir, x_val, y_val, cfg.data.batch_size)
        best = model_dir
    else:
        model, source = models.load_source(cfg, splits.num_classes, ctx.store)
        val_acc = float((model.predict(x_val, batch_size=cfg.data.batch_size, verbose=0).argmax(-1) == y_val).mean())
        best = out / "best.keras"
        model.save(best)
    log.info("imported model: val accuracy %.4f (no training; %s sha256 %s)", val_acc, source.kind, source.sha256[:12])
    return best, {"val_accuracy": [val_acc]}, source


def _keep(best: Path, source: SourceModel | None, splits: data.Splits, batch: int, out: Path) -> tuple[Path, float]:
    """The run's model file (model.keras, or saved_model.tar for a SavedModel source) and its test accuracy."""
    x_test, y_test = data.to_arrays(splits.test)
    if source is not None and source.kind == "saved_model":
        return saved_model.pack(best, out / "saved_model.tar"), saved_model.accuracy(best, x_test, y_test, batch)
    import keras

    model = keras.models.load_model(best, compile=False)  # drops optimizer state
    test_acc = float((model.predict(x_test, batch_size=batch, verbose=0).argmax(-1) == y_test).mean())
    model.save(out / "model.keras")  # never compiled after loading: no optimizer state inside
    return out / "model.keras", test_acc


def run(ctx: StepContext) -> TrainResult:
    """No inputs; returns a TrainResult. With model.source set, the given model is imported instead of trained."""
    import tensorflow as tf

    cfg = ctx.config
    deterministic = seed_everything(cfg.data.seed, cfg.train.deterministic)
    with timed("load dataset"):
        splits = data.load_splits(cfg.data, ctx.store, cfg.max_image_pixels)
    log.info("dataset %s: classes=%s counts=%s", cfg.data.source, splits.class_names, splits.counts)
    if cfg.quantize.needs_calibration:  # fail now, not after training
        data.check_calibration(splits, cfg.quantize.calibration_samples)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        best_path, hist, source = (_import if cfg.model.source else _fit)(ctx, splits, out)
        dataset = splits.describe()
        (out / "history.json").write_text(json.dumps(hist, indent=2))
        (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
        for name in ("history.json", "dataset.json"):  # kept even when the model is refused: they say why
            ctx.store.put_file(keys.model(ctx.run_id, name), out / name)
        best_val = max(hist.get("val_accuracy") or [0.0])
        check_learned(best_val, splits.num_classes, cfg.train.min_accuracy_over_chance)
        model_file, test_acc = _keep(best_path, source, splits, cfg.data.batch_size, out)
        model_art = ctx.store.put_file(keys.model(ctx.run_id, model_file.name), model_file)
    tf.keras.backend.clear_session()
    return TrainResult(model=ctx.store.ref(model_art), keras_test_accuracy=test_acc, best_val_accuracy=best_val,
                       epochs_run=len(hist.get("loss", [])), dataset=dataset, source=source,
                       deterministic=deterministic and source is None)
