"""What the pre-training image check (tasks/ml/images.py) costs: every image of a folder decoded once more.

Runs on local files (no store): the 1,797 digits at 32 px (PNG, as the dev stack seeds them) and photo-sized
JPEGs. Prints images/s and the milliseconds per image; the check runs in every step that loads the folder.

    .venv/bin/python benchmarks/image_check.py [--photos 200] [--size 640]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


def _write(folder: Path, blobs: list[bytes], suffix: str) -> list[str]:
    paths = []
    for i, blob in enumerate(blobs):
        path = folder / f"{i}{suffix}"
        path.write_bytes(blob)
        paths.append(str(path))
    return paths


def _time(label: str, paths: list[str]) -> None:
    from tasks.core.memory import max_image_pixels
    from tasks.ml.images import check_images

    check_images("bench", paths[:4], paths[:4], 3, max_image_pixels("8g", 3))  # warm TensorFlow up
    started = time.perf_counter()
    check_images("bench", paths, paths, 3, max_image_pixels("8g", 3))
    took = time.perf_counter() - started
    print(f"{label}: {len(paths)} images in {took:.2f}s = {len(paths) / took:.0f} images/s "
          f"({1000 * took / len(paths):.2f} ms per image)")


def main() -> int:
    import numpy as np
    import tensorflow as tf

    from tasks.ml.seed_data import digit_pngs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--size", type=int, default=640)
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    with tempfile.TemporaryDirectory() as tmp:
        digits = _write(Path(tmp), [blob for _, blob in digit_pngs()], ".png")
        _time("digits 32 px PNG", digits)
        photo = (rng.rand(args.size, args.size, 3) * 255).astype(np.uint8)
        jpegs = [tf.io.encode_jpeg(np.roll(photo, i, axis=0), quality=90).numpy() for i in range(args.photos)]
        _time(f"photos {args.size} px JPEG", _write(Path(tmp), jpegs, ".jpg"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
