"""The champion: the model currently blessed for the fleet, found from the manifests (no "latest" keys).

It is the newest ``runs/*/manifest.json`` whose gate blessed a model trained on the same dataset source with the
same classes. Its fp32 TFLite is downloaded against the sha256 its manifest recorded and evaluated on THIS run's
test split, so candidate and champion are compared on the same images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.exceptions import StorageError
from tasks.core.results import ArtifactRef
from tasks.core.storage import ArtifactStore

log = logging.getLogger(__name__)
RUNS_PREFIX = "runs/"


@dataclass(frozen=True)
class Champion:
    run_id: str
    fp32: ArtifactRef
    image_size: int
    channels: int


def is_blessed(manifest: dict[str, Any]) -> bool:
    """Manifests written before the gate recorded ``blessed`` only exist when something was deployed."""
    gate = manifest.get("gate") or {}
    return bool(gate.get("blessed", bool(gate.get("deploy"))))


def _fp32_ref(store: ArtifactStore, manifest: dict[str, Any]) -> ArtifactRef | None:
    ref = ((manifest.get("gate") or {}).get("tflite") or {}).get("fp32")
    if isinstance(ref, dict) and {"uri", "sha256", "size_bytes"} <= set(ref):
        return ArtifactRef.from_xcom(ref)
    for art in manifest.get("artifacts") or []:
        if isinstance(art, dict) and art.get("name") == "tflite/fp32.tflite" and art.get("sha256"):
            return ArtifactRef(store.uri(art["key"]), art["sha256"], int(art["size_bytes"]))
    return None


def find(store: ArtifactStore, source: str, classes: list[str], exclude_run: str,
         runs_prefix: str = RUNS_PREFIX) -> Champion | None:
    """The newest blessed run on the same dataset source and classes, or None (the first run has none).

    ``runs_prefix`` exists for tests, which must not add runs to the shared ``runs/`` (the pipeline's
    credentials cannot delete them again).
    """
    objs = [o for o in store.list(runs_prefix)
            if o["Key"][len(runs_prefix):].count("/") == 1 and o["Key"].endswith("/manifest.json")]
    for obj in sorted(objs, key=lambda o: (o["LastModified"], o["Key"]), reverse=True):
        run_id = obj["Key"][len(runs_prefix):].split("/")[0]
        if run_id == exclude_run:
            continue
        try:
            manifest = store.get_json(obj["Key"])
        except (StorageError, ValueError) as exc:
            log.warning("champion search: skipping unreadable %s (%s)", obj["Key"], exc)
            continue
        dataset = manifest.get("dataset") or {}
        if dataset.get("source") != source or list(dataset.get("classes") or []) != list(classes):
            continue
        if not is_blessed(manifest):
            continue
        fp32 = _fp32_ref(store, manifest)
        data_cfg = (manifest.get("config") or {}).get("data") or {}
        if fp32 is None or "image_size" not in data_cfg:
            log.warning("champion search: blessed run %s lists no fp32 model or input size; skipped", run_id)
            continue
        return Champion(run_id, fp32, int(data_cfg["image_size"]), int(data_cfg.get("channels", 3)))
    return None


def fetch_fp32(store: ArtifactStore, champion: Champion, dest_dir: Path) -> bytes:
    """The champion's fp32 TFLite bytes, verified against the sha256 in its manifest (IntegrityError if not)."""
    return store.fetch(champion.fp32, dest_dir / f"champion-{champion.run_id}-fp32.tflite").read_bytes()
