"""Bring your own model (``model.source``): which kind a source is, and the check against the data that
``resolve_config`` runs before any compute (no TensorFlow: see tasks/ml/model_io.py).

A source is ``s3://…/model.keras``, ``s3://…/model.h5`` or a SavedModel directory ``s3://…/<prefix>/`` holding
``saved_model.pb`` (and ``variables/``). Its one input must be ``(batch, data.image_size, data.image_size,
data.channels)`` raw [0, 255] pixels and its one output the probabilities of the dataset's classes.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from tasks.core.config import PipelineConfig
from tasks.core.exceptions import ConfigError
from tasks.core.keys import S3_SCHEME, parse_s3_uri, source_kind
from tasks.core.storage import ArtifactStore
from tasks.ml.model_io import ModelIO, keras_file_io, saved_model_io

log = logging.getLogger(__name__)
SAVED_MODEL_PB = "saved_model.pb"


def check_io(io: ModelIO, cfg: PipelineConfig, num_classes: int | None, what: str) -> None:
    """Refuse a model whose input is not (H, W, C) of the config or whose output width is not the class count."""
    want = (cfg.data.image_size, cfg.data.image_size, cfg.data.channels)
    shape_ok = len(io.input_shape) == 4 and tuple(io.input_shape[1:]) == want
    classes_ok = num_classes is None or io.output_width is None or io.output_width == num_classes
    if shape_ok and classes_ok:
        return
    got_classes = "?" if io.output_width is None else io.output_width
    want_classes = "?" if num_classes is None else num_classes
    raise ConfigError(
        f"{what}: input {tuple(io.input_shape)} / {got_classes} classes do not match this config "
        f"({(None, *want)} / {want_classes} classes of data.source={cfg.data.source}): "
        + ("set data.image_size/data.channels to the model's input (H, W, C)" if not shape_ok else "")
        + (" and " if not (shape_ok or classes_ok) else "")
        + ("use a dataset with the model's classes (or a model with one output per class)" if not classes_ok else "")
    )


def read_io(store: ArtifactStore, uri: str) -> ModelIO:
    """Fetch (verified) just what describes the source's input and output: the .keras/.h5 file, or saved_model.pb."""
    what = f"model.source={uri}"
    bucket, key = parse_s3_uri(uri)
    kind = source_kind(uri)
    listed = {obj["Key"] for obj in store.list(key, bucket=bucket)}
    pb_key = key + SAVED_MODEL_PB
    if kind == "saved_model" and pb_key not in listed:
        raise ConfigError(f"{what}: no {SAVED_MODEL_PB} under this prefix ({len(listed)} object(s)); a SavedModel "
                          "directory holds saved_model.pb and variables/ (tf.saved_model.save or model.export())")
    if kind != "saved_model" and key not in listed:
        raise ConfigError(f"{what}: no such object in the store")
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "saved_model":
            obj = store.fetch_verified(f"s3://{bucket}/{pb_key}", Path(tmp) / SAVED_MODEL_PB)
            return saved_model_io(obj.path.read_bytes(), what)
        obj = store.fetch_verified(uri, Path(tmp) / f"source.{kind}")
        return keras_file_io(str(obj.path), what)


def dataset_classes(cfg: PipelineConfig, store: ArtifactStore) -> list[str] | None:
    """The classes the train step will see, from a listing of an s3:// image folder (as tasks.ml.data derives them).

    A ``tfds:`` source is not read here (its metadata needs TFDS and TensorFlow): None, and the train step checks
    the class count when it loads the data.
    """
    if not cfg.data.source.startswith(S3_SCHEME):
        return None
    from tasks.ml.data import list_image_folder

    return list_image_folder(store, cfg.data.source)[1]


def check_source(cfg: PipelineConfig, store: ArtifactStore) -> ModelIO | None:
    """Config-time check of ``model.source`` against the data; None when there is no source."""
    if not cfg.model.source:
        return None
    io = read_io(store, cfg.model.source)
    classes = dataset_classes(cfg, store)
    check_io(io, cfg, None if classes is None else len(classes), f"model.source={cfg.model.source}")
    log.info("model.source %s: input %s, %s outputs; data: %s classes", cfg.model.source, io.input_shape,
             io.output_width if io.output_width is not None else "?", len(classes) if classes else "?")
    return io
