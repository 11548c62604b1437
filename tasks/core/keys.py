"""Artifact key layout: the one place that spells a key. Everything of a run is under ``runs/<run_id>/``;
nothing is ever "latest". ``run_id`` is always the safe form (``safe_run_id``)."""

from __future__ import annotations

import hashlib
import re

from tasks.core.exceptions import ConfigError, StorageError

RUNS_PREFIX = "runs/"
MANIFEST_NAME = "manifest.json"
S3_SCHEME = "s3://"
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_HASH_LEN = 10
# the shape of a hashed (sanitised) run id: ``<stem>-<10 lowercase hex>``; a raw id of this shape is hashed too
_HASHED_FORM = re.compile(rf".+-[0-9a-f]{{{_HASH_LEN}}}")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """The one ``s3://`` parser: 's3://bucket/some/key' -> ('bucket', 'some/key'); anything else is a
    StorageError."""
    bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/") if uri.startswith(S3_SCHEME) else ("", "", "")
    if not bucket:
        raise StorageError(f"{uri!r} is not an s3://<bucket>/<key> URI")
    return bucket, key


def source_kind(uri: str) -> str | None:
    """'keras' | 'h5' | 'saved_model' (an s3:// prefix ending in '/') for a model.source URI; None if neither."""
    try:
        _bucket, key = parse_s3_uri(uri)
    except StorageError:
        return None
    if not key.strip("/"):
        return None
    if key.endswith("/"):
        return "saved_model"
    return next((kind for suffix, kind in ((".keras", "keras"), (".h5", "h5")) if key.endswith(suffix)), None)


def same_source(a: str, b: str) -> bool:
    """Two dataset sources name the same data: ``s3://datasets/digits`` and ``s3://datasets/digits/`` do."""
    return a.strip().rstrip("/") == b.strip().rstrip("/")


def safe_run_id(run_id: str) -> str:
    """The form of a run id used in keys and device paths: stable, safe for a shell and a path, idempotent (a key
    maps to itself, so a reader may pass either form).

    Airflow's ids carry ':' and '+'. When sanitising changes an id, a hash of the original is appended, so
    ``a:b``, ``a+b`` and ``a b`` get different keys. Ids a path or a command line could misread are refused.
    Being idempotent, it cannot be injective on its own (``a_b-<hash of a:b>`` is a key and maps to itself):
    Airflow run ids go through ``run_key``, which is.
    """
    if not run_id or any(ord(c) < 32 or ord(c) == 127 for c in run_id):
        raise ConfigError(f"run id {run_id!r}: empty or contains control characters (newline, tab, ...)")
    if run_id.startswith((".", "-")) or run_id.endswith(".partial") or len(run_id) > 200:
        raise ConfigError(f"run id {run_id!r}: must not start with '.' or '-', end in '.partial', or exceed 200 "
                          "characters; trigger the run with another run id")
    cleaned = _RUN_ID_UNSAFE.sub("_", run_id)
    return run_id if cleaned == run_id else _hashed(run_id, cleaned)


def _hashed(run_id: str, cleaned: str) -> str:
    stem = cleaned.strip("_.-")[:150] or "run"
    return f"{stem}-{hashlib.sha256(run_id.encode()).hexdigest()[:_HASH_LEN]}"


def run_key(airflow_run_id: str, clear_number: int = 0) -> str:
    """The run's key in the store and on devices: injective, so no crafted run id can take another run's key.

    A safe id is its own key unless it has the shape of a hashed key (``<stem>-<10 hex>``): such an id is hashed
    too, so ``a_b-<hash of a:b>`` cannot land on the key of ``a:b`` (two ids share a key only if their sha256
    prefixes collide). A cleared (re-run) Airflow run gets a fresh key, so it never overwrites the artifacts,
    release or manifest its first attempt published ('#' cannot occur in an Airflow run id, so the attempt form
    cannot collide with another run's id)."""
    run_id = airflow_run_id if not clear_number else f"{airflow_run_id}#clear{clear_number}"
    safe = safe_run_id(run_id)
    if safe == run_id and _HASHED_FORM.fullmatch(run_id):
        return _hashed(run_id, run_id)
    return safe


def run_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/"


def model(run_id: str, name: str = "model.keras") -> str:
    return f"{run_prefix(run_id)}model/{name}"


def tflite(run_id: str, mode: str) -> str:
    return f"{run_prefix(run_id)}tflite/{mode}.tflite"


def evaluation(run_id: str, name: str = "metrics.json") -> str:
    return f"{run_prefix(run_id)}eval/{name}"


def device(run_id: str, device_name: str) -> str:
    return f"{run_prefix(run_id)}devices/{device_name}.json"


def report(run_id: str) -> str:
    return f"{run_prefix(run_id)}report/index.html"


def manifest(run_id: str) -> str:
    return f"{run_prefix(run_id)}{MANIFEST_NAME}"


def blessing(run_id: str) -> str:
    """The gate's blessing of the run, signed by Airflow's ``announce`` (tasks/fleet/blessing.py)."""
    return f"{run_prefix(run_id)}blessing.json"


def unsafe_key_reason(rel: str) -> str | None:
    """Why the object key ``rel`` (relative to the folder being mirrored) cannot become a local path under that
    folder, or None: an absolute key, an empty, '.' or '..' segment, a backslash or a control character would
    put the file elsewhere (or somewhere a shell misreads). S3 allows all of them; MinIO refuses some."""
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return "contains a control character"
    if "\\" in rel:
        return "contains a backslash"
    if rel.startswith("/"):
        return "is absolute"
    bad = [p for p in rel.split("/") if p in ("", ".", "..")]
    return f"has a {bad[0]!r} path segment" if bad else None


def run_of_manifest(key: str) -> str | None:
    """The run id of a ``runs/<run_id>/manifest.json`` key, None for any other key."""
    parts = key.split("/")
    ok = len(parts) == 3 and f"{parts[0]}/" == RUNS_PREFIX and parts[1] and parts[2] == MANIFEST_NAME
    return parts[1] if ok else None


# --- fleet: rollouts and device states (tasks/fleet/records.py) --------------------------------------------------
ROLLOUTS_PREFIX = "rollouts/"
DEVICES_PREFIX = "devices/"


def rollout_record(rollout_id: str) -> str:
    """Written last by a rollout run: a rollout without it did not finish."""
    return f"{ROLLOUTS_PREFIX}{rollout_id}/record.json"


def device_state(device_name: str) -> str:
    """The device's ``current`` after its last switch (older object versions are its history)."""
    return f"{DEVICES_PREFIX}{device_name}/state.json"


def device_drift(device_name: str) -> str:
    """The newest drift verdict of the release the device runs (tasks/fleet/drift.py), written by the collect
    DAG's drift task; older object versions are its history."""
    return f"{DEVICES_PREFIX}{device_name}/drift.json"


def rollout_device(rollout_id: str, device_name: str) -> str:
    """bench.py's whole document for one device of a rollout."""
    return f"{ROLLOUTS_PREFIX}{rollout_id}/devices/{device_name}.json"


def rollout_report(rollout_id: str) -> str:
    """The rollout's HTML report (tasks/fleet/report.py), written just before its record."""
    return f"{ROLLOUTS_PREFIX}{rollout_id}/report.html"


def rollout_of_record(key: str) -> str | None:
    """The rollout id of a ``rollouts/<id>/record.json`` key, None for any other key."""
    parts = key.split("/")
    ok = len(parts) == 3 and f"{parts[0]}/" == ROLLOUTS_PREFIX and parts[1] and parts[2] == "record.json"
    return parts[1] if ok else None


# --- data back from the devices (tasks/fleet/collect.py) ---------------------------------------------------------
TELEMETRY_PREFIX = "telemetry/"
INCOMING = "_incoming"  # unlabelled device samples inside a dataset; training and the new-data watcher skip it


def telemetry(device_name: str, release: str, file_name: str) -> str:
    """One final telemetry file of edgeops-serve (``<period>-<instance>.json``), in the artifacts bucket."""
    return f"{TELEMETRY_PREFIX}{device_name}/{release}/{file_name}"


def incoming_sample(dataset_prefix: str, device_name: str, release: str, file_name: str) -> str:
    """A device sample inside its dataset (key in the dataset's bucket): ``<dataset>/_incoming/<device>/<release>/…``.
    A person labels it by moving it into ``<dataset>/<class>/``."""
    prefix = dataset_prefix.strip("/")
    return f"{prefix + '/' if prefix else ''}{INCOMING}/{device_name}/{release}/{file_name}"


def is_incoming(key: str, dataset_prefix: str) -> bool:
    """Whether ``key`` lies under ``<dataset_prefix>/_incoming/`` (unlabelled samples, never training data)."""
    prefix = dataset_prefix.strip("/")
    rel = key[len(prefix) + 1:] if prefix and key.startswith(prefix + "/") else key
    return rel.split("/", 1)[0] == INCOMING
