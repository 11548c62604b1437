"""The champion: the model currently blessed for the fleet, found from the manifests (no "latest" keys).

It is the newest ``runs/*/manifest.json`` whose gate blessed a model trained on the same dataset source with the
same classes. Its fp32 TFLite is downloaded against the sha256 its manifest recorded and evaluated on THIS run's
test split, so candidate and champion are compared on the same images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.core.exceptions import RecordError, StorageError
from tasks.core.keys import same_source
from tasks.core.manifest import RunManifest
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


def is_blessed(manifest: RunManifest) -> bool:
    """Manifests written before the gate recorded ``blessed`` (schema 1) only exist when something was deployed
    (``RunManifest.blessed`` says so)."""
    return manifest.blessed


def _fp32_ref(store: ArtifactStore, manifest: RunManifest) -> ArtifactRef | None:
    """The pinned fp32 the gate evaluated, else (schema 1) the run's listed fp32 object, unversioned."""
    if manifest.gate is not None and "fp32" in manifest.gate.tflite:
        return manifest.gate.tflite["fp32"]
    art = manifest.artifact("tflite/fp32.tflite")
    return None if art is None else ArtifactRef(store.uri(art.key), art.sha256, art.size_bytes)


def find(store: ArtifactStore, source: str, classes: list[str], exclude_run: str,
         runs_prefix: str = RUNS_PREFIX, fleet_runs: Sequence[str] = ()) -> Champion | None:
    """The champion for a challenger on ``source`` with ``classes``, or None (the first run has none).

    A candidate is a blessed run of a shipping profile on the same data (sources compared normalised:
    ``s3://datasets/digits/`` is ``s3://datasets/digits``) and the same classes. Among them, the run the fleet
    serves now (``fleet_runs``, most devices first: ``tasks.fleet.history.fleet_runs``) wins; with none on the
    fleet, the newest blessed run. ``runs_prefix`` exists for tests, which must not add runs to the shared
    ``runs/`` (the pipeline's credentials cannot delete them again).
    """
    objs = [o for o in store.list(runs_prefix)
            if o["Key"][len(runs_prefix):].count("/") == 1 and o["Key"].endswith("/manifest.json")]
    found: dict[str, Champion] = {}
    for obj in sorted(objs, key=lambda o: (o["LastModified"], o["Key"]), reverse=True):
        run_id = obj["Key"][len(runs_prefix):].split("/")[0]
        if run_id == exclude_run:
            continue
        champion = _candidate(store, obj["Key"], run_id, source, classes)
        if champion is not None:
            found[run_id] = champion
            if not fleet_runs or run_id in fleet_runs:
                break  # the newest one: enough without a fleet, and a fleet run is what we look for
    served = [found[r] for r in fleet_runs if r in found]
    return served[0] if served else next(iter(found.values()), None)


def _candidate(store: ArtifactStore, key: str, run_id: str, source: str, classes: list[str]) -> Champion | None:
    try:
        manifest = RunManifest.from_dict(store.get_json(key), store.uri(key))
    except (StorageError, ValueError, RecordError) as exc:
        log.warning("champion search: skipping unreadable %s (%s)", key, exc)
        return None
    if not same_source(manifest.source or "", source) or list(manifest.classes) != list(classes):
        return None
    if not is_blessed(manifest) or not manifest.ships:
        return None
    fp32, shape = _fp32_ref(store, manifest), manifest.input_shape
    if fp32 is None or shape is None:
        log.warning("champion search: blessed run %s lists no fp32 model or input size; skipped", run_id)
        return None
    return Champion(run_id, fp32, *shape)


def fetch_fp32(store: ArtifactStore, champion: Champion, dest_dir: Path) -> bytes:
    """The champion's fp32 TFLite bytes, verified against the sha256 in its manifest (IntegrityError if not)."""
    return store.fetch(champion.fp32, dest_dir / f"champion-{champion.run_id}-fp32.tflite").read_bytes()
