"""Collected device samples as training images: an ``.npz`` whose ``x`` is the frame edgeops-serve received.

A sample (``tasks/device/serve_records.py``, collected by ``tasks/fleet/collect.py``) is stored exactly as the
device wrote it: its sha256 is in its name and the collector verified it, so it is never rewritten in the store.
When a person labels one (moves it into ``<dataset>/<class>/``), training reads it like an image: the loader
(``tasks/ml/data.py``) downloads the ``.npz`` and this module writes a PNG of ``x`` beside it in the local cache.
From there the image is checked and decoded like any other (``tasks/ml/images.py``).

``x`` is what the service accepts: ``(H, W, C)`` or ``(1, H, W, C)`` with C 1, 3 or 4 (or ``(H, W)``), uint8 or
float at the model's input scale (0..255), finite. The array's header is read first and a frame over the pixel
bound is refused without loading it. The file is read with ``allow_pickle`` off.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

NPZ_SUFFIX = ".npz"
NPZ_MAGIC = b"PK\x03\x04"  # an .npz is a zip file
_CHANNELS = (1, 3, 4)


def frame_problem(data: bytes, max_pixels: int) -> str | None:
    """What makes this ``.npz`` unusable as a training image, or None."""
    found = _frame(data, max_pixels)
    return found if isinstance(found, str) else None


def as_training_image(path: Path, max_pixels: int) -> Path:
    """The PNG of the sample at ``path`` (a downloaded ``.npz``), written once beside it in the cache.

    A sample that is not a usable frame is returned as is: ``tasks.ml.images.check_images`` then names it with
    ``frame_problem``'s reason, with every other bad image of the dataset, before anything is trained."""
    png = path.with_name(path.name + ".png")
    if png.exists():
        return png
    frame = _frame(path.read_bytes(), max_pixels)
    if isinstance(frame, str):
        return path
    import tensorflow as tf

    tmp = png.with_name(f".{png.name}.tmp")
    tmp.write_bytes(tf.io.encode_png(frame).numpy())
    tmp.replace(png)
    return png


def _frame(data: bytes, max_pixels: int) -> Any:
    """``x`` as an (H, W, C) uint8 array, or what is wrong with it."""
    import numpy as np

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if "x.npy" not in z.namelist():
                return f"a .npz sample needs an array x (the frame); it holds {sorted(z.namelist())}"
            with z.open("x.npy") as f:
                shape, dtype = _header(f)  # the header only: nothing allocated yet
                problem = _shape_problem(tuple(shape), dtype, max_pixels)
                if problem:
                    return problem
            x = np.load(io.BytesIO(z.read("x.npy")), allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, KeyError) as exc:
        return f"not a readable .npz sample ({exc})"
    x = x.reshape(x.shape[-3:] if x.ndim == 4 else x.shape)
    x = x[..., None] if x.ndim == 2 else x
    values = x.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        return "x holds values outside 0..255 (or NaN/inf): not a frame at the model's input scale"
    return np.round(values).astype(np.uint8)


def _header(f: Any) -> tuple[tuple[int, ...], Any]:
    import numpy as np

    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"x is an .npy version {version} array; numpy.save writes 1.0 or 2.0")
    shape, _, dtype = read(f)
    return tuple(shape), dtype


def _shape_problem(shape: tuple[int, ...], dtype: Any, max_pixels: int) -> str | None:
    if dtype.kind not in "uif":
        return f"x has dtype {dtype}: a frame is uint8 or float (0..255)"
    lead = shape[:1] if len(shape) == 4 else ()
    hwc = shape[1:] if len(shape) == 4 else shape
    if lead not in ((), (1,)) or len(hwc) not in (2, 3) or (len(hwc) == 3 and hwc[2] not in _CHANNELS):
        return f"x has shape {shape}: a frame is (H, W, C) or (1, H, W, C) with C in {_CHANNELS}, or (H, W)"
    height, width = hwc[:2]
    if not height or not width:
        return f"x has shape {shape}: an empty frame"
    if height * width > max_pixels:
        return (f"x is {width}x{height} = {width * height} pixels, over the {max_pixels} the memory budget allows; "
                "resize it")
    return None
