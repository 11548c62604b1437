"""A SavedModel source at run time (step processes only: TensorFlow): fetch, digest, pack, run.

The run keeps its own copy as ONE object, ``runs/<id>/model/saved_model.tar`` (a deterministic tar: sorted
paths, zero times and owners), so it is pinned and verified by one ArtifactRef like ``model.keras``. Quantize
converts the directory with ``TFLiteConverter.from_saved_model`` (its ``serving_default`` signature, the
converter's default); evaluate and train run that signature as loaded by ``tf.saved_model.load``.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

from tasks.core.exceptions import ConfigError
from tasks.core.results import SourceModel
from tasks.core.storage import ArtifactStore, LocalObject
from tasks.ml.model_io import SERVING_SIGNATURE, ModelIO, saved_model_io

PB = "saved_model.pb"


def tree_sha256(files: list[tuple[str, str]]) -> str:
    """sha256 over the sorted ``"<relative path>\\t<file sha256>\\n"`` lines: the identity of a directory."""
    lines = "".join(f"{rel}\t{digest}\n" for rel, digest in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def fetch(store: ArtifactStore, uri: str, dest: Path) -> tuple[Path, SourceModel]:
    """Download the SavedModel directory at ``uri`` (every object verified) into ``dest``; describe what came."""
    objects: list[LocalObject] = store.fetch_prefix(uri, dest)
    if not (dest / PB).is_file():
        raise ConfigError(f"model.source={uri}: no {PB} under this prefix; a SavedModel directory holds {PB} and "
                          "variables/")
    files = [(obj.path.relative_to(dest).as_posix(), obj.sha256) for obj in objects]
    source = SourceModel(uri=uri, kind="saved_model", sha256=tree_sha256(files),
                         size_bytes=sum(obj.size_bytes for obj in objects), files=len(objects))
    return dest, source


def io_of(model_dir: Path, what: str) -> ModelIO:
    return saved_model_io((model_dir / PB).read_bytes(), what)


def pack(model_dir: Path, out: Path) -> Path:
    """A deterministic tar of the directory (same files, same bytes -> same sha256)."""
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(model_dir).as_posix())
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    return out


def unpack(archive: Path, dest: Path) -> Path:
    """Extract a ``pack`` archive (regular files only, inside ``dest``: the 'data' filter refuses anything else)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def predict(model_dir: Path, x: Any, batch_size: int) -> Any:
    """Class probabilities of ``serving_default`` on float images, ``batch_size`` per call (or the signature's
    fixed batch, the last chunk padded)."""
    import numpy as np
    import tensorflow as tf

    fn = tf.saved_model.load(str(model_dir)).signatures[SERVING_SIGNATURE]
    (name, spec), = fn.structured_input_signature[1].items()
    (out_name,) = fn.structured_outputs
    step = spec.shape[0] or batch_size
    outs = []
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        pad = step - len(chunk) if spec.shape[0] else 0
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out = fn(**{name: tf.constant(chunk, dtype=spec.dtype)})[out_name].numpy()
        outs.append(out[: len(out) - pad])
    return np.concatenate(outs)


def accuracy(model_dir: Path, x: Any, y: Any, batch_size: int) -> float:
    return float((predict(model_dir, x, batch_size).argmax(-1) == y).mean())
