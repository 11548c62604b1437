"""Dataset loading: ``tfds:<name>`` or an image folder ``s3://<bucket>/<prefix>/<class>/*.jpg|png|npz``.

Every step (train, quantize, evaluate) re-derives the same seeded train/val/test split from the source,
so the int8 calibration set can be drawn from TRAIN and the accuracy figures from TEST without
shipping tensors between steps. Images stay raw float32 pixels in [0, 255]; models rescale inside.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core import keys, memory
from tasks.core.config import DataConfig, ExecutionConfig
from tasks.core.exceptions import BadDataError, ConfigError, DatasetError
from tasks.core.keys import parse_s3_uri, unsafe_key_reason
from tasks.core.storage import ArtifactStore
from tasks.ml.frames import NPZ_SUFFIX, as_training_image
from tasks.ml.images import check_images

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", NPZ_SUFFIX)  # .npz: a labelled device sample (tasks/ml/frames.py)


@dataclass(frozen=True)
class Splits:
    """Unbatched ``(image float32 HxWxC in [0,255], label int32)`` datasets plus what describes them."""

    train: Any
    val: Any
    test: Any
    class_names: tuple[str, ...]
    counts: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        return {**self.info, "classes": list(self.class_names), "counts": dict(self.counts)}


def cache_root() -> Path:
    return Path(os.environ.get("EDGEOPS_CACHE", Path.home() / ".cache" / "edgeops"))


def split_sizes(total: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_train = int(total * fractions[0])
    n_val = int(total * fractions[1])
    return n_train, n_val, total - n_train - n_val


def load_splits(cfg: DataConfig, store: ArtifactStore | None = None, max_pixels: int | None = None) -> Splits:
    """The seeded splits. An image folder's images are all checked first (``check_images``): ``max_pixels`` is
    the largest image allowed (``PipelineConfig.max_image_pixels``; None: that of the default memory limit)."""
    if cfg.source.startswith("tfds:"):
        return _load_tfds(cfg)
    if store is None:
        raise ConfigError(f"data.source={cfg.source!r} needs an object store")
    if max_pixels is None:
        max_pixels = memory.max_image_pixels(ExecutionConfig().memory_limit, cfg.channels)
    return _load_s3_folder(cfg, store, max_pixels)


# --- TFDS --------------------------------------------------------------------------------------------------
def _load_tfds(cfg: DataConfig) -> Splits:
    import tensorflow_datasets as tfds

    name = cfg.source.split(":", 1)[1]
    try:
        builder = tfds.builder(name)
    except Exception as exc:  # noqa: BLE001 - tfds raises DatasetNotFoundError and friends
        raise DatasetError(f"data.source={cfg.source!r}: TFDS has no dataset {name!r} ({exc})") from exc
    try:
        builder.download_and_prepare()
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(
            f"data.source={cfg.source!r}: could not download/prepare it ({exc}). Offline machines: prepare it "
            "once into TFDS_DATA_DIR, or use an s3:// image folder"
        ) from exc
    slices, counts = _tfds_slices(cfg, builder)
    log.info("loading %s slices %s", cfg.source, slices)
    parts = builder.as_dataset(split=slices, as_supervised=True, shuffle_files=False)
    prep = _preprocess(cfg)
    train, val, test = (ds.map(lambda x, y: prep(x, y)) for ds in parts)
    if counts is None:  # no split metadata (TFDS mock data): count what the slices yield
        sizes = [int(ds.reduce(0, lambda n, _: n + 1)) for ds in parts]
        counts = dict(zip(("train", "val", "test"), sizes, strict=True))
        _check_counts(cfg, counts["train"], counts["val"], counts["test"])
    names = tuple(builder.info.features["label"].names)
    info = {"source": cfg.source, "version": str(builder.info.version), "slices": slices,
            "fingerprint": _digest(slices, cfg)}
    return Splits(train, val, test, names, counts, info)


def _tfds_slices(cfg: DataConfig, builder: Any) -> tuple[list[str], dict[str, int] | None]:
    """Deterministic train/val/test slices of the dataset's ``train`` split.

    Absolute index slices when the split size is known; percent slices when it is not (TFDS mock data).
    """
    if "train" not in builder.info.splits:
        a, b = round(cfg.split[0] * 100), round((cfg.split[0] + cfg.split[1]) * 100)
        return [f"train[:{a}%]", f"train[{a}%:{b}%]", f"train[{b}%:]"], None
    total = builder.info.splits["train"].num_examples
    if cfg.max_examples:
        total = min(total, cfg.max_examples)
    n_train, n_val, n_test = split_sizes(total, cfg.split)
    _check_counts(cfg, n_train, n_val, n_test)
    slices = [f"train[0:{n_train}]", f"train[{n_train}:{n_train + n_val}]", f"train[{n_train + n_val}:{total}]"]
    return slices, {"train": n_train, "val": n_val, "test": n_test}


# --- image folder in the object store ----------------------------------------------------------------------
def list_image_folder(store: ArtifactStore, uri: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Return ([(key, class, etag)], class names) or raise DatasetError naming what to fix.

    ``<uri>/_incoming/`` is never read: it holds device samples (tasks/fleet/collect.py) until a person labels
    one by moving it into ``<uri>/<class>/``."""
    bucket, prefix = parse_s3_uri(uri)
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    entries, seen_classes, unsafe = [], set(), []
    for obj in store.list(prefix, bucket=bucket):
        rel = obj["Key"][len(prefix) :]
        if keys.is_incoming(rel, ""):  # _incoming/: device samples nobody labelled yet
            continue
        reason = unsafe_key_reason(rel) if rel and not rel.endswith("/") else None
        if reason:
            unsafe.append(f"{obj['Key']!r} ({reason})")
            continue
        if "/" not in rel:
            continue
        cls = rel.split("/", 1)[0]
        seen_classes.add(cls)
        if rel.lower().endswith(IMAGE_SUFFIXES):
            entries.append((obj["Key"], cls, obj.get("ETag", "").strip('"')))
    if unsafe:
        raise BadDataError(f"{uri}/: refusing object key(s) that would be written outside the local cache: "
                           f"{', '.join(unsafe)}; rename or remove them (nothing was downloaded)")
    classes = sorted({c for _, c, _ in entries})
    if not entries:
        raise DatasetError(f"no images under {uri}/: expected {uri}/<class>/*.jpg|png|npz")
    empty = sorted(seen_classes - set(classes))
    if empty:
        raise DatasetError(f"class folder(s) {empty} under {uri}/ hold no .jpg/.png images (or .npz device "
                           "samples): add images or remove them")
    if len(classes) < 2:
        raise DatasetError(f"{uri}/ has only class {classes}: a classifier needs at least two class folders")
    entries.sort()
    return entries, classes


def stratified_split(labels: list[int], fractions: tuple[float, float, float],
                     seed: int) -> tuple[list[int], list[int], list[int]]:
    """Indices of train/val/test with each class split by the same fractions (seeded; every split shuffled).

    Per class, the train and val shares are rounded down and the test split takes the rest, so a class with
    few images still reaches the test split, where the gate counts its evidence.
    """
    import numpy as np

    rng = np.random.RandomState(seed)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for c in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == c]
        members = [members[i] for i in rng.permutation(len(members))]
        n_train, n_val, _ = split_sizes(len(members), fractions)
        parts[0].extend(members[:n_train])
        parts[1].extend(members[n_train:n_train + n_val])
        parts[2].extend(members[n_train + n_val:])
    return tuple([part[i] for i in rng.permutation(len(part))] for part in parts)  # type: ignore[return-value]


def _load_s3_folder(cfg: DataConfig, store: ArtifactStore, max_pixels: int) -> Splits:
    import numpy as np
    import tensorflow as tf

    entries, classes = list_image_folder(store, cfg.source)
    order = np.random.RandomState(cfg.seed).permutation(len(entries))
    entries = [entries[i] for i in order]
    if cfg.max_examples:
        entries = entries[: cfg.max_examples]
    labels = [classes.index(cls) for _, cls, _ in entries]
    train, val, test = stratified_split(labels, cfg.split, cfg.seed)
    _check_counts(cfg, len(train), len(val), len(test))
    bucket, _ = parse_s3_uri(cfg.source)
    paths = [str(as_training_image(Path(p), max_pixels)) if key.lower().endswith(NPZ_SUFFIX) else p
             for p, (key, _, _) in zip(_download(store, bucket, entries), entries, strict=True)]
    check_images(cfg.source, [key for key, _, _ in entries], paths, cfg.channels, max_pixels)
    prep = _preprocess(cfg)

    def part(indices: list[int]) -> Any:
        ds = tf.data.Dataset.from_tensor_slices(([paths[i] for i in indices], [labels[i] for i in indices]))
        return ds.map(lambda p, y: prep(tf.io.decode_image(tf.io.read_file(p), channels=cfg.channels,
                                                           expand_animations=False), y))

    info = {"source": cfg.source, "images": len(entries), "fingerprint": _digest(entries, cfg),
            "split": "stratified by class"}
    counts = {"train": len(train), "val": len(val), "test": len(test)}
    return Splits(part(train), part(val), part(test), tuple(classes), counts, info)


def _download(store: ArtifactStore, bucket: str, entries: list[tuple[str, str, str]]) -> list[str]:
    """Fetch images into a local cache keyed by bucket/key/etag, so the 6 steps of a run download once."""
    root = cache_root() / "datasets" / bucket

    def one(entry: tuple[str, str, str]) -> str:
        key, _, etag = entry
        dest = root / f"{key}.{etag[:12]}" if etag else root / key
        if not dest.resolve().is_relative_to(root.resolve()):  # list_image_folder refused such keys already
            raise BadDataError(f"s3://{bucket}/{key}: refusing a key that would be written outside {root}")
        if not dest.exists():
            store.get_file(key, dest, bucket=bucket)
        return str(dest)

    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(one, entries))
    log.info("dataset: %d images cached under %s", len(paths), root)
    return paths


# --- shared helpers -----------------------------------------------------------------------------------------
def _preprocess(cfg: DataConfig) -> Any:
    import tensorflow as tf

    def prep(image: Any, label: Any) -> tuple[Any, Any]:
        if cfg.channels == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        image = tf.image.resize(tf.cast(image, tf.float32), (cfg.image_size, cfg.image_size))
        image = tf.ensure_shape(image, (cfg.image_size, cfg.image_size, cfg.channels))
        return tf.clip_by_value(image, 0.0, 255.0), tf.cast(label, tf.int32)

    return prep


def _check_counts(cfg: DataConfig, n_train: int, n_val: int, n_test: int) -> None:
    if min(n_train, n_val, n_test) < 1:
        raise DatasetError(
            f"{cfg.source}: split {cfg.split} leaves train/val/test = {n_train}/{n_val}/{n_test} images; "
            "every split needs at least one: add images or raise data.max_examples"
        )


def _digest(parts: Any, cfg: DataConfig) -> str:
    return hashlib.sha256(repr((parts, cfg.seed, cfg.split, cfg.max_examples)).encode()).hexdigest()[:16]


def batched(ds: Any, batch_size: int, shuffle_seed: int | None = None, buffer: int = 2048,
            transform: Any = None) -> Any:
    """Batch + prefetch; shuffle (re-shuffled every epoch, seeded) only when a seed is given; ``transform``
    (training augmentation) maps each batch, sequentially, so its random draws follow the seeded order."""
    import tensorflow as tf

    if shuffle_seed is not None:
        ds = ds.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if transform is not None:
        ds = ds.map(transform)
    return ds.prefetch(tf.data.AUTOTUNE)


def to_arrays(ds: Any, limit: int = 0) -> tuple[Any, Any]:
    """Materialise (a prefix of) an unbatched split as numpy arrays (test sets, device samples)."""
    import numpy as np

    if limit:
        ds = ds.take(limit)
    xs, ys = [], []
    for x, y in ds.batch(256).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def check_calibration(splits: Splits, count: int) -> None:
    """Calibration draws from TRAIN: refuse more samples than it has (the train step calls this before fitting)."""
    if count > splits.counts["train"]:
        raise ConfigError(
            f"quantize.calibration_samples={count} but the train split has only {splits.counts['train']} "
            "images: lower calibration_samples or use more data"
        )


def calibration_images(splits: Splits, count: int) -> Iterator[Any]:
    """Yield ``count`` single-image batches from the TRAIN split for int8 calibration.

    The seed calibrated on test images, which leaks the test set into the quantisation ranges.
    """
    check_calibration(splits, count)
    for image, _ in splits.train.take(count).batch(1).as_numpy_iterator():
        yield image
