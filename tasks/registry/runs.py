"""The query side of ``edgeops runs``: list finished runs, resolve a reference, verify artifacts.

A run is finished when ``runs/<run_id>/manifest.json`` exists (the publish step writes it last), so every
query here starts from manifests. "latest" is the manifest object with the newest LastModified; there are
no "latest" keys in the bucket.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from tasks.core import keys
from tasks.core.exceptions import ConfigError, RecordError, StorageError
from tasks.core.keys import run_key
from tasks.core.manifest import RunManifest
from tasks.core.results import ArtifactRef
from tasks.core.storage import ArtifactStore

log = logging.getLogger(__name__)

COLUMNS = ("run_id", "created_at", "code_version", "profile", "current", "fp32_accuracy", "devices")


def manifest_objects(store: ArtifactStore) -> list[dict[str, Any]]:
    """Every ``runs/<id>/manifest.json`` object, newest first (ties broken by key, for a stable order)."""
    found = [obj for obj in store.list(keys.RUNS_PREFIX) if keys.run_of_manifest(obj["Key"])]
    return sorted(found, key=lambda o: (o["LastModified"], o["Key"]), reverse=True)


def _row(obj: dict[str, Any], m: RunManifest | None, error: str = "") -> dict[str, Any]:
    fp32 = m.variants.get("fp32") if m is not None else None
    row = {
        "run_id": keys.run_of_manifest(obj["Key"]),  # the key's form: what `resolve` accepts
        "created_at": m.created_at if m is not None else obj["LastModified"].isoformat(timespec="seconds"),
        "code_version": (m.code_version[:8] or None) if m is not None else None,
        "profile": m.profile if m is not None else None,
        "current": m.current if m is not None else None,
        "fp32_accuracy": fp32.accuracy if fp32 is not None else None,
        "devices": len(m.devices) if m is not None else None,
        "last_modified": obj["LastModified"].isoformat(),
    }
    if error:
        row["error"] = error
    return row


def list_runs(store: ArtifactStore) -> list[dict[str, Any]]:
    """One row per finished run, newest first. An unreadable manifest gives a row with an ``error``."""
    rows = []
    for obj in manifest_objects(store):
        try:
            rows.append(_row(obj, _load(store, obj["Key"])))
        except (StorageError, RecordError) as exc:
            rows.append(_row(obj, None, str(exc)))
    return rows


def recent_manifests(store: ArtifactStore, limit: int) -> list[RunManifest]:
    """The newest ``limit`` readable manifests, newest first (unreadable ones are skipped, and logged)."""
    out: list[RunManifest] = []
    for obj in manifest_objects(store):
        if len(out) == limit:
            break
        try:
            out.append(_load(store, obj["Key"]))
        except (StorageError, RecordError) as exc:
            log.warning("skipping %s: %s", obj["Key"], exc)
    return out


def newest_blessed(store: ArtifactStore, scan: int = 50) -> RunManifest:
    """The manifest of the newest run whose gate blessed a model of a shipping profile, as its manifest says (for
    display: ``fleet status``'s last good night). What a rollout ships is chosen by ``tasks.fleet.blessing``,
    from signed blessings, never from a manifest alone."""
    for manifest in recent_manifests(store, scan):
        if manifest.gate is not None and manifest.gate.blessed and manifest.ships:
            return manifest
    raise StorageError(f"none of the newest {scan} runs has a blessed model of a shipping profile: run the nightly "
                       "DAG first (test profiles such as tiny never ship unless a rollout names the run)")


@dataclass(frozen=True)
class Pinned:
    """A run's manifest and the one version of ``manifest.json`` it was read from (what a rollout ships)."""

    manifest: RunManifest
    ref: ArtifactRef


def _decode(store: ArtifactStore, key: str, data: bytes) -> RunManifest:
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise StorageError(f"{store.uri(key)} is not valid JSON: {exc}") from exc
    return RunManifest.from_dict(raw, store.uri(key))


def load_pinned(store: ArtifactStore, ref: ArtifactRef) -> Pinned:
    """Exactly the manifest version ``ref`` names (e.g. the one the nightly's ``announce`` put on the asset
    event), checked against its sha256: a newer version written since is never read."""
    if not ref.version_id:
        raise StorageError(f"{ref.uri}: a pinned manifest needs a version id (is the bucket versioned?)")
    _bucket, key = keys.parse_s3_uri(ref.uri)
    return Pinned(_decode(store, key, store.get_ref(ref)), ref)


def pin(store: ArtifactStore, ref: str) -> Pinned:
    """``resolve`` then pinned: the run's manifest and the version it was read from, in one read."""
    key = keys.manifest(resolve(store, ref).run_id)
    data, pinned = store.get_pinned(key)
    return Pinned(_decode(store, key, data), pinned)


def _load(store: ArtifactStore, key: str) -> RunManifest:
    """The decoded manifest at ``key``: StorageError if it cannot be read as JSON, RecordError if it is not a
    manifest of any schema."""
    return _decode(store, key, store.get_bytes(key))


def resolve(store: ArtifactStore, ref: str) -> RunManifest:
    """The manifest of ``ref``: a run id (raw Airflow form accepted) or ``latest``."""
    ref = (ref or "").strip()
    if ref == "latest":
        objs = manifest_objects(store)
        if not objs:
            raise StorageError(
                f"no finished runs in s3://{store.bucket}/{keys.RUNS_PREFIX} (a run writes {keys.MANIFEST_NAME} last)"
            )
        return _load(store, objs[0]["Key"])
    candidates = [ref] if ref and "/" not in ref else []
    try:
        safe = run_key(ref)  # the raw Airflow id's key
        if safe not in candidates:
            candidates.append(safe)
    except ConfigError:
        pass
    for run_id in candidates:
        if store.exists(keys.manifest(run_id)):
            return _load(store, keys.manifest(run_id))
    raise StorageError(f"run {ref} has no manifest: it did not finish or does not exist")


def verify(store: ArtifactStore, manifest: RunManifest) -> list[str]:
    """Re-download every artifact the manifest lists and check size + sha256; return the problems found."""
    if not manifest.artifacts:
        return [f"run {manifest.run_id}: manifest lists no artifacts"]
    problems = []
    for art in manifest.artifacts:
        reason = store.verify(art.to_xcom())
        if reason:
            log.warning("FAIL %s: %s", art.key, reason)
            problems.append(f"{art.key}: {reason}")
        else:
            log.info("ok   %s (%d bytes, sha256 %s…)", art.key, art.size_bytes, art.sha256[:12])
    return problems


def _cell(column: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if column.endswith("accuracy") and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value * 100:.2f}%"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    """Plain-text, column-aligned table; rows with an ``error`` get it on an indented line below."""
    if not rows:
        return "(no finished runs)"
    cells = [[_cell(c, row.get(c)) for c in columns] for row in rows]
    header = [c.upper() for c in columns]
    widths = [max(len(header[i]), *(len(r[i]) for r in cells)) for i in range(len(columns))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row, line in zip(rows, cells, strict=True):
        lines.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        if row.get("error"):
            lines.append(f"    ! {row['error']}")
    return "\n".join(lines)
