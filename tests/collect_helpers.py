"""edgeops-serve's files on a device, written as the service writes them (its own ``write_atomic``, names and
``.npz`` fields), for the collection tests and benchmarks/collect.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from tasks.device import layout
from tasks.device.serve_records import Window, stamp, write_atomic


def state_dir(root: Path) -> Path:
    return root / layout.SERVE_DATA


def write_telemetry(root: Path, release: str, instance: str, final: bool, hour: int = 0) -> tuple[str, bytes]:
    """One telemetry file (``final`` or still open); returns (path relative to the state dir, its bytes)."""
    window = Window(release, 1_700_000_000 - 1_700_000_000 % 3600 + 3600 * hour, requests=5)
    data = json.dumps(window.doc(3600, final), indent=1).encode()
    rel = f"{layout.SERVE_TELEMETRY}/{release}/{stamp(window.start)}-{instance}.json"
    write_atomic(state_dir(root) / rel, data)
    return rel, data


def write_samples(root: Path, release: str, count: int, seed: int = 0, fsync: bool = True,
                  shape: tuple[int, ...] = (8, 8, 3)) -> dict[str, bytes]:
    """``count`` samples as serve_records.Samples._write names and fills them; {relative path: bytes}."""
    rng, out = np.random.default_rng(seed), {}
    folder = state_dir(root) / layout.SERVE_SAMPLES / release
    folder.mkdir(parents=True, exist_ok=True)
    for seq in range(1, count + 1):
        kind = "low" if seq % 3 else "reservoir"
        buf = io.BytesIO()
        np.savez(buf, x=rng.integers(0, 256, shape, dtype=np.uint8), probabilities=np.array([0.4, 0.6]),
                 index=np.int64(1), release=np.str_(release), kind=np.str_(kind))
        data = buf.getvalue()
        name = f"{stamp(time.time())}-{seq:08d}-{kind}-{hashlib.sha256(data).hexdigest()}.npz"
        if fsync:
            write_atomic(folder / name, data)
        else:
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, folder / name)
        out[f"{layout.SERVE_SAMPLES}/{release}/{name}"] = data
    return out


def remaining(root: Path) -> list[str]:
    """Every file left in the state dir (dot files included), relative, sorted."""
    base = state_dir(root)
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
