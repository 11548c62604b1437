"""edgeops-serve's model side: one release's LiteRT interpreter, the request body decoders, the smoke invoke.

STANDALONE like bench.py: the standard library, numpy and ai_edge_litert (or tflite_runtime) only; shipped beside
serve.py and imported by it as a sibling module. Never import anything from the project here.

A ``Model`` is one release directory opened once: ``model.tflite`` (-> the current variant), ``release.json``
(``current_variant``), an optional ``labels.json`` (a JSON list of class names, index -> name) and the optional
``sample.npz`` (its first image is the smoke input; without it, a zero tensor). Its interpreter is not thread-safe,
so ``classify`` holds the model's own lock: requests on one model are serialised, and a request that took a model
finishes on it even when the service swaps in another one meanwhile.

Request bodies (``decode``), no PIL on a Pi, so no JPEG/PNG:
- ``application/x-npy`` (or any body starting with numpy's magic): an ``.npy`` array, ``allow_pickle`` off;
- ``application/octet-stream`` with ``X-Shape: H,W,C`` (or ``1,H,W,C``) and ``X-Dtype: uint8|float32``: raw bytes
  (e.g. RGB888 frames from a camera pipeline);
- ``image/x-portable-pixmap``: a binary PPM (P6, maxval 255), which ffmpeg, v4l2 tools and ImageMagick write.
Pixel values are the model's input scale (0..255 for the platform's models, which rescale inside); the image must
already have the model's input size: the service does not resize.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

XNNPACK = "xnnpack"  # LiteRT's built-in default CPU delegate; anything else is an external library's path
LITERT_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
NPY_MAGIC = b"\x93NUMPY"
DTYPES = {"uint8": np.uint8, "float32": np.float32}
_PPM = re.compile(rb"\AP6\s+(?:#[^\n]*\n\s*)*(\d+)\s+(\d+)\s+(\d+)\s")


class BadInput(ValueError):
    """The request body cannot be the model's input: the message says what to send instead (HTTP 400)."""


class SmokeFailed(RuntimeError):
    """A release did not load, or its smoke invoke gave a wrong shape or non-finite output: never swapped in."""


def interpreter_module() -> Any:
    """The LiteRT interpreter module, preferring ai-edge-litert (as bench.py does)."""
    errors = []
    for name in LITERT_MODULES:
        try:
            return __import__(name, fromlist=["Interpreter"])
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise SystemExit(f"serve.py: no TFLite runtime importable ({'; '.join(errors)}); "
                     "run it with the device runtime's python (ai-edge-litert or tflite-runtime)")


@dataclass(frozen=True)
class Prediction:
    """One classification: class index, its name when the release ships labels, probabilities, confidence."""

    index: int
    label: str | None
    probabilities: tuple[float, ...]

    @property
    def confidence(self) -> float:
        return self.probabilities[self.index]


def _probabilities(raw: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """Dequantized output as probabilities: a softmax output as is, logits through a softmax, a single sigmoid
    unit as [1 - p, p]."""
    scale, zero_point = detail["quantization"]
    values = raw.astype(np.float64).reshape(-1)
    values = (values - zero_point) * scale if scale else values
    if values.size == 1:
        p = float(np.clip(values[0], 0.0, 1.0))
        return np.array([1.0 - p, p])
    if values.min() < 0 or abs(values.sum() - 1.0) > 1e-2:
        values = np.exp(values - values.max())
        values = values / values.sum()
    return values


class Model:
    """One release directory's interpreter, opened with the group's threads and delegate."""

    def __init__(self, release_dir: str, threads: int, delegate: str, options: Mapping[str, str]) -> None:
        self.path = os.path.realpath(release_dir)
        self.release = os.path.basename(self.path)
        base = Path(self.path)
        meta = json.loads((base / "release.json").read_text()) if (base / "release.json").is_file() else {}
        variant = meta["current_variant"] if isinstance(meta, dict) and "current_variant" in meta else None
        self.variant = str(variant or Path(os.readlink(base / "model.tflite")).stem)  # the deploy writes both
        labels = json.loads((base / "labels.json").read_text()) if (base / "labels.json").is_file() else None
        if labels is not None and not (isinstance(labels, list) and all(isinstance(c, str) for c in labels)):
            raise SmokeFailed(f"{base / 'labels.json'}: expected a JSON list of class names")
        self.labels: tuple[str, ...] | None = tuple(labels) if labels is not None else None
        mod = interpreter_module()
        delegates = [] if delegate == XNNPACK else [mod.load_delegate(delegate, dict(options))]
        self.interp = mod.Interpreter(model_path=str(base / "model.tflite"), num_threads=threads,
                                      experimental_delegates=delegates or None)
        inp = self.interp.get_input_details()[0]
        if list(inp["shape_signature"][:1]) == [-1] or inp["shape"][0] != 1:
            self.interp.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
        self.interp.allocate_tensors()
        self.inp, self.out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]
        self.shape = tuple(int(d) for d in self.inp["shape"][1:])
        self.lock = threading.Lock()

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = x.reshape(1, *x.shape) if x.ndim == len(self.shape) else x
        if tuple(x.shape) != (1, *self.shape):
            raise BadInput(f"input shape {tuple(x.shape)}: this model takes {self.shape} (or (1, *{self.shape}))")
        dtype = self.inp["dtype"]
        if dtype in (np.int8, np.uint8, np.int16):
            scale, zero_point = self.inp["quantization"]
            info = np.iinfo(dtype)
            q = np.round(x.astype(np.float32) / (scale or 1.0) + zero_point)
            return np.clip(q, info.min, info.max).astype(dtype)
        return x.astype(dtype)

    def classify(self, x: np.ndarray) -> Prediction:
        tensor = self._prepare(x)
        with self.lock:
            self.interp.set_tensor(self.inp["index"], tensor)
            self.interp.invoke()
            raw = self.interp.get_tensor(self.out["index"])
        probs = _probabilities(raw, self.out)
        index = int(probs.argmax())
        label = self.labels[index] if self.labels and index < len(self.labels) else None
        return Prediction(index, label, tuple(round(float(p), 6) for p in probs))

    def smoke(self) -> None:
        """One invoke on the release's first sample image (a zero tensor without sample.npz): finite
        probabilities, at least as many classes as the labels name. Raises SmokeFailed."""
        sample = Path(self.path) / "sample.npz"
        if sample.is_file():
            with np.load(sample, allow_pickle=False) as data:
                x = data["x"][:1].astype(np.float32)
        else:
            x = np.zeros((1, *self.shape), np.float32)
        raw_width = int(np.prod(self.out["shape"][1:]))
        prediction = self.classify(x)
        if not np.isfinite(prediction.probabilities).all():
            raise SmokeFailed(f"release {self.release}: the smoke invoke gave non-finite output")
        if self.labels and raw_width > 1 and raw_width < len(self.labels):
            raise SmokeFailed(f"release {self.release}: output width {raw_width} < {len(self.labels)} labels")


def _header_shape(headers: Mapping[str, str]) -> tuple[tuple[int, ...], Any]:
    shape_text, dtype_text = headers.get("X-Shape"), headers.get("X-Dtype", "uint8")
    if not shape_text or dtype_text not in DTYPES:
        raise BadInput("a raw body needs X-Shape: H,W,C and X-Dtype: uint8|float32 "
                       "(or send application/x-npy, or a binary PPM as image/x-portable-pixmap)")
    try:
        shape = tuple(int(d) for d in shape_text.split(","))
    except ValueError:
        raise BadInput(f"X-Shape {shape_text!r}: comma-separated integers, e.g. 224,224,3") from None
    return shape, DTYPES[dtype_text]


def decode(body: bytes, content_type: str, headers: Mapping[str, str]) -> np.ndarray:
    """The request body as an array (uint8 or float32), per the formats in the module docstring."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-npy" or body.startswith(NPY_MAGIC):
        try:
            x = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BadInput(f"not a readable .npy array ({exc})") from None
        if x.dtype.kind not in "uif":
            raise BadInput(f".npy dtype {x.dtype}: send numbers (uint8 or float32)")
        return x if x.dtype in (np.uint8, np.float32) else x.astype(np.float32)
    if kind == "image/x-portable-pixmap":
        m = _PPM.match(body)
        if not m or int(m.group(3)) != 255:
            raise BadInput("image/x-portable-pixmap: only binary PPM (P6) with maxval 255")
        w, h = int(m.group(1)), int(m.group(2))
        pixels = body[m.end():]
        if len(pixels) != w * h * 3:
            raise BadInput(f"PPM {w}x{h}: expected {w * h * 3} pixel bytes, got {len(pixels)}")
        return np.frombuffer(pixels, np.uint8).reshape(h, w, 3)
    shape, dtype = _header_shape(headers)
    need = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(body) != need or not shape:
        raise BadInput(f"X-Shape {shape} of {np.dtype(dtype).name} is {need} bytes; the body has {len(body)}")
    return np.frombuffer(body, dtype).reshape(shape)
