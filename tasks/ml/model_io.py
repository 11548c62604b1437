"""A model's input shape and output width, read from its files WITHOUT TensorFlow (for config-time checks).

``resolve_config`` runs in the Airflow process, which must not pay for TensorFlow (and, with the docker and
kubernetes runners, does not have it). Measured here: ``import tensorflow`` takes ~3.8 s and ~650 MB RSS, and
so does ``import tensorflow.core.protobuf.saved_model_pb2`` (a subpackage import runs ``tensorflow/__init__``
first). So:

* ``.keras``: a zip; its ``config.json`` is the model config, parsed as JSON.
* ``.h5``: the ``model_config`` attribute of the HDF5 file, read with h5py (~0.1 s; h5py comes with Keras).
* SavedModel: ``saved_model.pb`` is parsed by the ``protobuf`` runtime (~0.1 s, ~16 MB) against a minimal schema
  built here that declares only the path SavedModel.meta_graphs -> signature_def["serving_default"] ->
  TensorInfo.tensor_shape, with TensorFlow's field numbers (tensorflow/core/protobuf/{saved_model,meta_graph}.proto,
  tensor_shape.proto). Protobuf skips every field the schema does not declare, so the rest of the graph is
  never decoded. This is exactly the signature ``TFLiteConverter.from_saved_model`` converts.

The Keras output width is found by walking back from the output layer through shape-preserving layers
(activations, dropout, normalisation) to a ``Dense``; a model ending in anything else has an unknown width here
(None), and the train step checks it on the loaded model instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from tasks.core.exceptions import ConfigError

SERVING_TAG, SERVING_SIGNATURE = "serve", "serving_default"
_SAME_WIDTH = {"Activation", "Softmax", "ReLU", "LeakyReLU", "ELU", "PReLU", "Dropout", "AlphaDropout",
               "GaussianDropout", "GaussianNoise", "SpatialDropout1D", "ActivityRegularization", "BatchNormalization",
               "LayerNormalization", "UnitNormalization", "Identity", "Rescaling"}


@dataclass(frozen=True)
class ModelIO:
    """One image input ``(batch, H, W, C)`` (None = any size) and the width of the one output (None = unknown)."""

    input_shape: tuple[int | None, ...]
    output_width: int | None


# --- Keras (.keras config.json, .h5 model_config) -----------------------------------------------------------
def keras_io(model: dict[str, Any], what: str) -> ModelIO:
    """Input shape and output width of a serialized Keras model config (Keras 3 or tf-keras/Keras 2)."""
    layers = model.get("config", {}).get("layers") or []
    if not layers:
        raise ConfigError(f"{what}: the Keras config lists no layers; save the model with model.save()")
    if model.get("class_name") == "Sequential":
        shape = _sequential_input(model)
        return ModelIO(shape, _width_sequential(layers))
    by_name = {_name(layer): layer for layer in layers}
    inputs, outputs = (_refs(model["config"].get(k)) for k in ("input_layers", "output_layers"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConfigError(f"{what}: the model has {len(inputs)} input(s) and {len(outputs)} output(s); "
                          "model.source needs one image input and one class-probability output")
    cfg = by_name[inputs[0]]["config"]
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    return ModelIO(tuple(shape), _width_functional(by_name, outputs[0]))


def _name(layer: dict[str, Any]) -> str:
    return layer.get("name") or layer["config"]["name"]


def _refs(raw: Any) -> list[str]:
    """Keras 3 writes one tensor as ['name', 0, 0], several (and tf-keras always) as [['name', 0, 0], ...]."""
    if not raw:
        return []
    return [raw[0]] if isinstance(raw[0], str) else [r[0] for r in raw]


def _sequential_input(model: dict[str, Any]) -> tuple[int | None, ...]:
    cfg = model["config"]
    first = cfg["layers"][0]
    shape = (first["config"].get("batch_shape") or first["config"].get("batch_input_shape")
             or cfg.get("build_input_shape") or (model.get("build_config") or {}).get("input_shape"))
    if not shape:
        raise ConfigError("the Sequential model has no input shape: build it with an Input layer before saving")
    return tuple(shape)


def _inbound(layer: dict[str, Any]) -> str | None:
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return None
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [keras_tensor, ...]}
        args = node.get("args") or [{}]
        return ((args[0] or {}).get("config") or {}).get("keras_history", [None])[0]
    return node[0][0]  # tf-keras: [["name", 0, 0, {}]]


def _width_of(layer: dict[str, Any]) -> int | None:
    if layer.get("class_name") == "Dense":
        return int(layer["config"]["units"])
    if layer.get("class_name") in ("Functional", "Sequential", "Model"):  # a nested model ends the network
        try:
            return keras_io(layer, "nested model").output_width
        except (ConfigError, KeyError, IndexError, TypeError):
            return None
    return None


def _width_sequential(layers: list[dict[str, Any]]) -> int | None:
    for layer in reversed(layers):
        if layer.get("class_name") not in _SAME_WIDTH:
            return _width_of(layer)
    return None


def _width_functional(by_name: dict[str, dict[str, Any]], name: str | None) -> int | None:
    for _ in range(len(by_name)):
        layer = by_name.get(name or "")
        if layer is None:
            return None
        if layer.get("class_name") not in _SAME_WIDTH:
            return _width_of(layer)
        name = _inbound(layer)
    return None


def keras_file_io(path: str, what: str) -> ModelIO:
    """ModelIO of a local ``.keras`` (zip with config.json) or ``.h5`` (model_config attribute) file."""
    try:
        if path.endswith(".keras"):
            import zipfile

            with zipfile.ZipFile(path) as zf:
                model = json.loads(zf.read("config.json"))
        else:
            try:
                import h5py
            except ImportError as exc:
                raise ConfigError(f"{what}: reading an .h5 before any compute needs h5py (installed with Keras) in "
                                  "the Airflow worker's environment: install it, or save the model as .keras") from exc
            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get("model_config")
                if raw is None:
                    raise ConfigError(f"{what}: this .h5 holds weights only (no model_config); save the whole model")
                model = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        return keras_io(model, what)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/h5py/json raise many types for a file that is not a model
        raise ConfigError(f"{what}: not a readable Keras model file ({type(exc).__name__}: {exc})") from exc


# --- SavedModel (saved_model.pb) ---------------------------------------------------------------------------
@cache
def _saved_model_class() -> Any:
    """The minimal SavedModel message class (field numbers from TensorFlow's .proto files)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    msgs = {  # message -> [(field name, number, type, label, message type)]; maps are repeated entries on the wire
        "Dim": [("size", 1, f.TYPE_INT64, f.LABEL_OPTIONAL, None)],
        "Shape": [("dim", 2, f.TYPE_MESSAGE, f.LABEL_REPEATED, "Dim"),
                  ("unknown_rank", 3, f.TYPE_BOOL, f.LABEL_OPTIONAL, None)],
        "TensorInfo": [("name", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, None),
                       ("tensor_shape", 3, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, "Shape")],
        "TensorEntry": [("key", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, None),
                        ("value", 2, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, "TensorInfo")],
        "SignatureDef": [("inputs", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, "TensorEntry"),
                         ("outputs", 2, f.TYPE_MESSAGE, f.LABEL_REPEATED, "TensorEntry")],
        "SignatureEntry": [("key", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, None),
                           ("value", 2, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, "SignatureDef")],
        "MetaInfoDef": [("tags", 4, f.TYPE_STRING, f.LABEL_REPEATED, None)],
        "MetaGraphDef": [("meta_info_def", 1, f.TYPE_MESSAGE, f.LABEL_OPTIONAL, "MetaInfoDef"),
                         ("signature_def", 5, f.TYPE_MESSAGE, f.LABEL_REPEATED, "SignatureEntry")],
        "SavedModel": [("meta_graphs", 2, f.TYPE_MESSAGE, f.LABEL_REPEATED, "MetaGraphDef")],
    }
    proto = descriptor_pb2.FileDescriptorProto(name="edgeops_saved_model_min.proto", package="edgeops_min")
    for msg, fields in msgs.items():
        desc = proto.message_type.add(name=msg)
        for name, number, kind, label, type_name in fields:
            desc.field.add(name=name, number=number, type=kind, label=label,
                           type_name=f".edgeops_min.{type_name}" if type_name else None)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("edgeops_min.SavedModel"))


def saved_model_io(pb: bytes, what: str) -> ModelIO:
    """ModelIO of the ``serve``-tagged graph's ``serving_default`` signature in a ``saved_model.pb``."""
    from google.protobuf.message import DecodeError

    try:
        saved = _saved_model_class().FromString(pb)
    except DecodeError as exc:
        raise ConfigError(f"{what}: saved_model.pb is not a SavedModel protobuf ({exc})") from exc
    graphs = [g for g in saved.meta_graphs if SERVING_TAG in g.meta_info_def.tags]
    signatures = {e.key: e.value for g in graphs[:1] for e in g.signature_def}
    if SERVING_SIGNATURE not in signatures:
        raise ConfigError(f"{what}: no '{SERVING_SIGNATURE}' signature in a '{SERVING_TAG}' graph (found "
                          f"{sorted(signatures)}); export it with model.export() or tf.saved_model.save(..., "
                          "signatures=...)")
    sig = signatures[SERVING_SIGNATURE]
    if len(sig.inputs) != 1 or len(sig.outputs) != 1:
        raise ConfigError(f"{what}: serving_default has {len(sig.inputs)} input(s) and {len(sig.outputs)} output(s); "
                          "model.source needs one image input and one class-probability output")
    shape_in, shape_out = (_dims(entries[0].value.tensor_shape) for entries in (sig.inputs, sig.outputs))
    return ModelIO(shape_in, shape_out[-1] if shape_out and len(shape_out) == 2 else None)


def _dims(shape: Any) -> tuple[int | None, ...]:
    return () if shape.unknown_rank else tuple(None if d.size < 0 else int(d.size) for d in shape.dim)
