"""Seed a small real dataset into the object store: scikit-learn's bundled handwritten digits as PNGs.

This machine is offline, so the demo cannot download cats_vs_dogs; the digits ship inside scikit-learn.
Layout: ``s3://<bucket>/<prefix>/<class>/<index>.png`` (the image-folder format data.py reads).
"""

from __future__ import annotations

import io
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tasks.core.keys import parse_s3_uri
from tasks.core.storage import ArtifactStore

log = logging.getLogger(__name__)


def digit_pngs(size: int = 32) -> list[tuple[str, bytes]]:
    """(relative key, PNG bytes) for the 1,797 8x8 digits, upscaled to ``size`` px grayscale."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = []
    for i, (img, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        pixels = np.clip(img * (255.0 / 16.0), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR).save(buf, format="PNG")
        out.append((f"{label}/{i:04d}.png", buf.getvalue()))
    return out


def seed_digits(store: ArtifactStore, uri: str) -> dict[str, Any]:
    """Upload the digits under ``uri`` unless every image is already there (idempotent)."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.strip("/")
    target = ArtifactStore(store.client, bucket)
    images = digit_pngs()
    existing = {o["Key"] for o in target.list(prefix + "/")}
    missing = [(f"{prefix}/{rel}", blob) for rel, blob in images if f"{prefix}/{rel}" not in existing]
    if missing:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda kb: target.put_bytes(kb[0], kb[1], content_type="image/png"), missing))
    log.info("dataset %s: %d images (%d uploaded now)", uri, len(images), len(missing))
    return {"uri": uri, "images": len(images), "uploaded": len(missing), "classes": 10}
