"""The query side of ``edgeops runs``: list finished runs, resolve a reference, verify artifacts.

A run is finished when ``runs/<run_id>/manifest.json`` exists (the publish step writes it last), so every
query here starts from manifests. "latest" is the manifest object with the newest LastModified; there are
no "latest" keys in the bucket.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.core import keys
from tasks.core.exceptions import ConfigError, StorageError
from tasks.core.keys import safe_run_id
from tasks.core.storage import ArtifactStore

log = logging.getLogger(__name__)

COLUMNS = ("run_id", "created_at", "code_version", "profile", "current", "fp32_accuracy", "devices")


def _manifest_objects(store: ArtifactStore) -> list[dict[str, Any]]:
    """Every ``runs/<id>/manifest.json`` object, newest first (ties broken by key, for a stable order)."""
    found = [obj for obj in store.list(keys.RUNS_PREFIX) if keys.run_of_manifest(obj["Key"])]
    return sorted(found, key=lambda o: (o["LastModified"], o["Key"]), reverse=True)


def _row(obj: dict[str, Any], manifest: dict[str, Any] | None, error: str = "") -> dict[str, Any]:
    run_id = keys.run_of_manifest(obj["Key"])
    m = manifest or {}
    fp32 = ((m.get("variants") or {}).get("fp32") or {}).get("accuracy")
    row = {
        "run_id": run_id,  # the key's form: what `resolve` accepts
        "created_at": m.get("created_at") or obj["LastModified"].isoformat(timespec="seconds"),
        "code_version": str(m.get("code_version") or "")[:8] or None,
        "profile": (m.get("config") or {}).get("profile"),
        "current": (m.get("gate") or {}).get("current"),
        "fp32_accuracy": fp32,
        "devices": len(m.get("devices") or []) if manifest is not None else None,
        "last_modified": obj["LastModified"].isoformat(),
    }
    if error:
        row["error"] = error
    return row


def list_runs(store: ArtifactStore) -> list[dict[str, Any]]:
    """One row per finished run, newest first. An unreadable manifest gives a row with an ``error``."""
    rows = []
    for obj in _manifest_objects(store):
        try:
            rows.append(_row(obj, _load(store, obj["Key"])))
        except StorageError as exc:
            rows.append(_row(obj, None, str(exc)))
    return rows


def recent_manifests(store: ArtifactStore, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` readable manifests, newest first (unreadable ones are skipped, and logged)."""
    out: list[dict[str, Any]] = []
    for obj in _manifest_objects(store):
        if len(out) == limit:
            break
        try:
            out.append(_load(store, obj["Key"]))
        except StorageError as exc:
            log.warning("skipping %s: %s", obj["Key"], exc)
    return out


def newest_blessed(store: ArtifactStore, scan: int = 50) -> dict[str, Any]:
    """The manifest of the newest run whose gate blessed a model (what a rollout with no run id ships)."""
    for manifest in recent_manifests(store, scan):
        if (manifest.get("gate") or {}).get("blessed"):
            return manifest
    raise StorageError(f"none of the newest {scan} runs has a blessed model: run the nightly DAG first")


def _load(store: ArtifactStore, key: str) -> dict[str, Any]:
    try:
        manifest = store.get_json(key)
    except ValueError as exc:
        raise StorageError(f"{store.uri(key)} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise StorageError(f"{store.uri(key)} is not a JSON object")
    return manifest


def resolve(store: ArtifactStore, ref: str) -> dict[str, Any]:
    """The manifest of ``ref``: a run id (raw Airflow form accepted) or ``latest``."""
    ref = (ref or "").strip()
    if ref == "latest":
        objs = _manifest_objects(store)
        if not objs:
            raise StorageError(
                f"no finished runs in s3://{store.bucket}/{keys.RUNS_PREFIX} (a run writes {keys.MANIFEST_NAME} last)"
            )
        return _load(store, objs[0]["Key"])
    candidates = [ref] if ref and "/" not in ref else []
    try:
        safe = safe_run_id(ref)
        if safe not in candidates:
            candidates.append(safe)
    except ConfigError:
        pass
    for run_id in candidates:
        if store.exists(keys.manifest(run_id)):
            return _load(store, keys.manifest(run_id))
    raise StorageError(f"run {ref} has no manifest: it did not finish or does not exist")


def verify(store: ArtifactStore, manifest: dict[str, Any]) -> list[str]:
    """Re-download every artifact the manifest lists and check size + sha256; return the problems found."""
    artifacts = manifest.get("artifacts") or []
    if not artifacts:
        return [f"run {manifest.get('run_id', '?')}: manifest lists no artifacts"]
    problems = []
    for art in artifacts:
        key = art.get("key") if isinstance(art, dict) else None
        if not key or "sha256" not in art or "size_bytes" not in art:
            problem = f"{key or art!r}: malformed artifact entry (needs key, sha256, size_bytes)"
        else:
            reason = store.verify(art)
            problem = f"{key}: {reason}" if reason else ""
        if problem:
            log.warning("FAIL %s", problem)
            problems.append(problem)
        else:
            log.info("ok   %s (%d bytes, sha256 %s…)", key, art["size_bytes"], art["sha256"][:12])
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
