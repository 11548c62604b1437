"""Keras model from config: a backbone + the seed's head. Inputs are raw pixels in [0, 255].

Every layer outside the Keras application backbone has a fixed name (``HEAD_LAYERS``, ``TINY_LAYERS``) so the
tfmot variants can rebuild the same architecture flat in tf-keras and copy the weights by layer name.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from tasks.core.config import PipelineConfig
from tasks.core.exceptions import ConfigError
from tasks.core.keys import S3_SCHEME
from tasks.core.results import ArtifactRef, SourceModel
from tasks.core.storage import ArtifactStore

log = logging.getLogger(__name__)


HEAD_LAYERS = ("head_dense1", "head_bn", "head_dense2", "head_dropout", "probs")
TINY_LAYERS = ("tiny_conv1", "tiny_pool", "tiny_conv2", "tiny_gap")
# the compact CNN ('cnn'): blocks of Conv(3x3, no bias)-BN-ReLU-MaxPool, then global max pooling
CNN_FILTERS = (32, 64, 128, 128)
CNN_GAP = "cnn_global_max"  # global MAX pooling: a small object on a large background is not averaged away
RESCALE = {"mobilenetv2": (1 / 127.5, -1.0), "tiny": (1 / 255.0, 0.0),
           "cnn": (1 / 255.0, 0.0)}  # efficientnet rescales internally
# backbone 'auto': fewer train images per class than this -> 'cnn'. MobileNetV2 from scratch needs thousands of
# images per class (1,800 images in 3 classes: val 0.43); a 4-block CNN learns a few hundred per class.
AUTO_CNN_BELOW = 1000


def cnn_layer_names(block: int) -> tuple[str, str, str, str]:
    """Names of block ``block`` (1-based): conv, batch norm, relu, pool (shared with the tf-keras rebuild)."""
    return f"cnn_conv{block}", f"cnn_bn{block}", f"cnn_relu{block}", f"cnn_pool{block}"


def resolve_backbone(backbone: str, weights: str, train_images: int, num_classes: int) -> str:
    """The backbone actually built: 'auto' is 'cnn' below AUTO_CNN_BELOW train images per class (and no
    ImageNet weights asked for), else 'mobilenetv2'; any other name is itself."""
    if backbone != "auto":
        return backbone
    per_class = train_images / max(1, num_classes)
    return "cnn" if per_class < AUTO_CNN_BELOW and weights != "imagenet" else "mobilenetv2"


def backbone_of(layer_names: set[str]) -> str:
    """Which backbone a trained model was built with, from its layer names (what 'auto' resolved to)."""
    if cnn_layer_names(1)[0] in layer_names:
        return "cnn"
    return "tiny" if TINY_LAYERS[0] in layer_names else "mobilenetv2"


def _cnn(keras: Any) -> Any:
    layers: list[Any] = []
    for i, filters in enumerate(CNN_FILTERS, start=1):
        conv, bn, relu, pool = cnn_layer_names(i)
        layers += [keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=conv),
                   keras.layers.BatchNormalization(name=bn), keras.layers.ReLU(name=relu),
                   keras.layers.MaxPooling2D(name=pool)]
    return keras.Sequential([*layers, keras.layers.GlobalMaxPooling2D(name=CNN_GAP)], name="cnn_backbone")


def _backbone(name: str, shape: tuple[int, int, int], weights: str | None, alpha: float) -> tuple[Any, Any]:
    """Return (preprocessing layer or None, feature extractor) for a named backbone."""
    import keras

    prep = None
    if name in RESCALE:
        scale, offset = RESCALE[name]
        prep = keras.layers.Rescaling(scale, offset=offset, name="rescale")
    if name == "efficientnetb0":  # EfficientNet rescales and normalises internally
        return None, keras.applications.EfficientNetB0(include_top=False, weights=weights, input_shape=shape,
                                                        pooling="avg")
    if name == "mobilenetv2":
        return prep, keras.applications.MobileNetV2(include_top=False, weights=weights, input_shape=shape,
                                                     alpha=alpha, pooling="avg")
    if name == "cnn":
        return prep, _cnn(keras)
    conv1, pool, conv2, gap = TINY_LAYERS
    tiny = keras.Sequential(
        [
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name=conv1),
            keras.layers.MaxPooling2D(name=pool),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=conv2),
            keras.layers.GlobalAveragePooling2D(name=gap),
        ],
        name="tiny_backbone",
    )
    return prep, tiny


def set_bn_momentum(model: Any, momentum: float) -> int:
    """Set every BatchNormalization's momentum (nested models included); returns how many were changed.

    Keras' applications use 0.999: trained from scratch for a few hundred steps the moving statistics stay
    near their initial values, so inference (which uses them) scores chance while training accuracy looks fine.
    """
    import keras

    changed = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            changed += 1
    return changed


def build_model(cfg: PipelineConfig, num_classes: int, backbone: str = "") -> Any:
    """Backbone, then Dense(512)-BN-Dense(64)-Dropout-softmax (the seed's head, sizes configurable).

    ``backbone`` is the resolved one (see resolve_backbone); empty = cfg.model.backbone, 'auto' meaning 'cnn'.
    """
    import keras

    backbone = backbone or cfg.model.backbone
    backbone = "cnn" if backbone == "auto" else backbone

    size, channels = cfg.data.image_size, cfg.data.channels
    if cfg.model.weights == "imagenet" and channels != 3:
        raise ConfigError("model.weights='imagenet' needs data.channels=3")
    weights = "imagenet" if cfg.model.weights == "imagenet" else None
    try:
        prep, base = _backbone(backbone, (size, size, channels), weights, cfg.model.alpha)
    except Exception as exc:  # noqa: BLE001 - keras raises URL/OS errors when weights cannot be fetched
        raise ConfigError(
            f"model.weights='imagenet' for {backbone}: the ImageNet weights could not be loaded ({exc}). "
            "Put the Keras weights file in ~/.keras/models/ on an offline machine, or use weights='none'"
        ) from exc
    base.trainable = cfg.model.train_backbone or weights is None
    inputs = keras.Input((size, size, channels), name="image")
    x = prep(inputs) if prep is not None else inputs
    x = base(x, training=False) if weights else base(x)
    units1, units2 = cfg.model.head_units
    d1, bn, d2, drop, probs = HEAD_LAYERS
    x = keras.layers.Dense(units1, activation="relu", name=d1)(x)
    x = keras.layers.BatchNormalization(name=bn)(x)
    x = keras.layers.Dense(units2, activation="relu", name=d2)(x)
    x = keras.layers.Dropout(cfg.model.dropout, name=drop)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=probs)(x)
    model = keras.Model(inputs, outputs, name=f"edgeops_{backbone}")
    set_bn_momentum(model, cfg.model.bn_momentum)
    return model


def _check_io(model: Any, cfg: PipelineConfig, num_classes: int, what: str) -> None:
    from tasks.ml.model_io import ModelIO
    from tasks.ml.model_source import check_io

    check_io(ModelIO(tuple(model.input_shape), model.output_shape[-1]), cfg, num_classes, what)


def load_source(cfg: PipelineConfig, num_classes: int, store: ArtifactStore) -> tuple[Any, SourceModel]:
    """A bring-your-own Keras model (``model.source``: .keras or .h5 in the store), checked against the data.

    The model must take raw pixels in [0, 255] (its own preprocessing inside) and output class probabilities.
    The file is fetched verified (size, ETag) and its sha256 recorded in the returned SourceModel.
    """
    import keras

    suffix = Path(cfg.model.source).suffix
    with tempfile.TemporaryDirectory() as tmp:
        obj = store.fetch_verified(cfg.model.source, Path(tmp) / f"source{suffix}")
        try:
            model = keras.models.load_model(obj.path, compile=False)
        except Exception as exc:  # noqa: BLE001 - keras raises many types for unreadable files
            raise ConfigError(f"model.source={cfg.model.source}: Keras cannot load it ({exc})") from exc
    _check_io(model, cfg, num_classes, f"model.source={cfg.model.source}")
    log.info("imported %s (%d parameters, sha256 %s)", cfg.model.source, model.count_params(), obj.sha256[:12])
    return model, SourceModel(cfg.model.source, suffix[1:], obj.sha256, obj.size_bytes)


def initial_model(cfg: PipelineConfig, num_classes: int, store: ArtifactStore | None, backbone: str = "") -> Any:
    """Fresh model (of the resolved ``backbone``), or a warm start from a previous run's ``.keras`` when
    model.weights is an s3:// URI."""
    if not cfg.model.weights.startswith(S3_SCHEME):
        return build_model(cfg, num_classes, backbone)
    import keras

    if store is None:
        raise ConfigError("model.weights is an s3:// URI but no object store is configured")
    with tempfile.TemporaryDirectory() as tmp:
        path = store.fetch(warm_start_ref(store, cfg.model.weights), Path(tmp) / "start.keras")
        model = keras.models.load_model(path, compile=False, safe_mode=True)  # no arbitrary code from the file
    _check_io(model, cfg, num_classes, f"model.weights={cfg.model.weights}")
    log.info("warm start from %s", cfg.model.weights)
    return model


def warm_start_ref(store: ArtifactStore, uri: str) -> ArtifactRef:
    """The pinned reference of a warm start: only the ``model.keras`` of a finished run (one with a manifest),
    checked against the sha256 its manifest recorded."""
    from tasks.core import keys
    from tasks.core.exceptions import RecordError, StorageError
    from tasks.core.keys import parse_s3_uri
    from tasks.registry import runs

    bucket, key = parse_s3_uri(uri)
    parts = key.split("/")
    run_id = parts[1] if len(parts) == 4 else ""
    if bucket != store.bucket or not run_id or key != keys.model(run_id):
        raise ConfigError(f"model.weights={uri}: a warm start must be a finished run's model, "
                          f"s3://{store.bucket}/{keys.model('<run_id>')}")
    try:
        manifest = runs.resolve(store, run_id)
    except (StorageError, RecordError) as exc:
        raise ConfigError(f"model.weights={uri}: {exc}; warm-start only from a finished, verified run") from exc
    entry = next((a for a in manifest.artifacts if a.key == key), None)
    if entry is None:
        raise ConfigError(f"model.weights={uri}: run {run_id}'s manifest does not list its model")
    return ArtifactRef(uri, entry.sha256, entry.size_bytes)
