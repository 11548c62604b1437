"""The check every image of a folder passes before any training: it decodes, and its size fits in memory.

The decode is TensorFlow's own ``tf.io.decode_image`` with the channels and flags the input pipeline
(tasks/ml/data.py) uses, so an image that passes here also decodes in training. The pixel count is read from the
header first (PNG's IHDR, TensorFlow's ``extract_jpeg_shape``) and an image over the bound is refused without
being decoded: a small file that claims a huge image (a decompression bomb) never allocates it.
"""

from __future__ import annotations

import re
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks.core.exceptions import BadDataError
from tasks.core.memory import DECODE_THREADS
from tasks.ml.frames import NPZ_MAGIC, frame_problem

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_TF_NOISE = re.compile(r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]\s*$")


def check_images(source: str, keys: list[str], paths: list[str], channels: int, max_pixels: int) -> None:
    """One BadDataError naming every image (by its key) that is empty, not a JPEG/PNG, too large or corrupt."""
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        found = list(pool.map(lambda p: image_problem(Path(p), channels, max_pixels), paths))
    bad = [f"{key}: {problem}" for key, problem in zip(keys, found, strict=True) if problem]
    if bad:
        raise BadDataError(f"{source}: {len(bad)} of {len(keys)} images cannot be used; fix or remove them "
                           "(nothing was trained):\n  " + "\n  ".join(bad))


def image_problem(path: Path, channels: int, max_pixels: int) -> str | None:
    """What is wrong with the image at ``path``, or None when it decodes as training will decode it."""
    data = path.read_bytes()
    if not data:
        return "zero bytes"
    if data.startswith(NPZ_MAGIC):  # a device sample that as_training_image could not turn into a PNG
        return frame_problem(data, max_pixels) or "a .npz sample that was not converted to PNG"
    size = _header_size(data)
    if isinstance(size, str):
        return size
    width, height = size
    if width * height > max_pixels:
        return (f"{width}x{height} = {width * height} pixels, over the {max_pixels} the memory budget allows "
                "(a decompression bomb?); resize it")
    return _decode_problem(data, channels)


def _header_size(data: bytes) -> tuple[int, int] | str:
    """(width, height) from the header alone, or what is wrong with it."""
    if data.startswith(PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            return "corrupt PNG: no IHDR header"
        width, height = struct.unpack(">II", data[16:24])
    elif data.startswith(JPEG_MAGIC):
        import tensorflow as tf

        try:
            height, width = (int(v) for v in tf.io.extract_jpeg_shape(data).numpy()[:2])
        except tf.errors.InvalidArgumentError as exc:
            return f"corrupt JPEG header: {_tf_reason(exc)}"
    else:
        return f"not a JPEG or PNG file (it starts with {data[:8]!r})"
    return (width, height) if width and height else f"corrupt header: {width}x{height} pixels"


def _decode_problem(data: bytes, channels: int) -> str | None:
    import tensorflow as tf

    try:
        tf.io.decode_image(data, channels=channels, expand_animations=False)
    except tf.errors.InvalidArgumentError as exc:
        return f"does not decode: {_tf_reason(exc)}"
    return None


def _tf_reason(exc: Exception) -> str:
    message = getattr(exc, "message", str(exc))
    return _TF_NOISE.sub("", str(message).strip().splitlines()[0]) or type(exc).__name__
