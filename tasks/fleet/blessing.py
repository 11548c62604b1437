"""The signed blessing: the link of the chain of trust between the gate and a rollout.

The pipeline's service account may write anything under ``runs/`` (every step holds it), so a manifest in MinIO
proves nothing about what the gate blessed: a new ``manifest.json`` version could name other model bytes. The
nightly's ``announce`` task (in Airflow, which alone holds the release signing key) therefore signs a
*blessing* for every blessed run: the run id and the exact manifest version (version id, sha256, size) the gate's
verdict was published in. A rollout ships a run only through its blessing, pinned to that manifest version, and a
device then gets a release statement signed from it. Anyone without the key can write ``blessing.json``, but not
one that verifies: a forged or swapped one is refused before anything is sent.

A blessing is not a release statement (no ``release``/``files``, ``kind: blessing``): a device refuses it.
It does not expire: a blessed run may be rolled out, or rolled back to, months later.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from tasks.core import keys, names
from tasks.core.exceptions import ConfigError, IntegrityError, StorageError
from tasks.core.manifest import RunManifest
from tasks.core.results import ArtifactRef, Record
from tasks.core.storage import ArtifactStore
from tasks.device import verify_release
from tasks.device.signing import Trust, key_id
from tasks.registry.runs import Pinned, load_pinned, manifest_objects

log = logging.getLogger(__name__)
KIND = "blessing"
SCHEMA = 1


@dataclass(frozen=True)
class Blessing(Record):
    """What ``announce`` signs: the run, its pinned manifest version and what the gate blessed."""

    run_id: str
    manifest: ArtifactRef
    variants: tuple[str, ...]
    current: str | None
    profile: str | None
    ships: bool
    signed_at: str

    @classmethod
    def of(cls, run_id: str, manifest: RunManifest, ref: ArtifactRef) -> Blessing:
        return cls(run_id, ref, tuple(manifest.deploy), manifest.current, manifest.profile, manifest.ships,
                   dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def sign(trust: Trust, blessing: Blessing) -> dict[str, Any]:
    """The signed document (``{"key_id", "payload", "signature"}``, as release statements)."""
    return trust.sign({"kind": KIND, "schema": SCHEMA, **blessing.to_xcom()})


def publish(store: ArtifactStore, trust: Trust, blessing: Blessing) -> str:
    """Sign ``blessing`` and write it to ``runs/<id>/blessing.json``; returns the key."""
    key = keys.blessing(blessing.run_id)
    store.put_json(key, sign(trust, blessing), name="blessing")
    return key


def open_doc(doc: Any, public_keys: dict[str, str], run_id: str) -> Blessing:
    """The blessing in ``doc`` if an accepted key signed it for ``run_id``; IntegrityError otherwise."""
    try:
        payload = verify_release.open_statement(doc, {k: bytes.fromhex(v) for k, v in public_keys.items()})
    except (verify_release.Refused, ValueError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"the blessing of run {run_id} does not verify: {exc}") from None
    if payload.get("kind") != KIND or payload.get("run_id") != run_id:
        raise IntegrityError(f"the signed document at runs/{run_id}/ is a blessing of "
                             f"{payload.get('run_id')!r} ({payload.get('kind')!r}), not of run {run_id}")
    return Blessing.from_xcom({k: v for k, v in payload.items() if k not in ("kind", "schema")})


def read(store: ArtifactStore, public_keys: dict[str, str], run_id: str) -> Blessing:
    """The verified blessing of ``run_id``; StorageError when there is none (the gate did not bless it, or it ran
    before blessings were signed), IntegrityError when it does not verify."""
    key = keys.blessing(run_id)
    if not store.exists(key):
        raise StorageError(f"run {run_id} has no signed blessing ({store.uri(key)}): only a run the gate blessed "
                           "ships, and the nightly's announce task signs it")
    try:
        doc = json.loads(store.get_bytes(key))
    except ValueError as exc:
        raise IntegrityError(f"{store.uri(key)} is not JSON: {exc}") from None
    return open_doc(doc, public_keys, run_id)


def pin(store: ArtifactStore, public_keys: dict[str, str], run_id: str) -> Pinned:
    """The manifest version ``run_id``'s blessing signed (never a newer one), checked against its sha256."""
    return _pinned(store, read(store, public_keys, run_id))


def _pinned(store: ArtifactStore, blessing: Blessing) -> Pinned:
    pinned = load_pinned(store, blessing.manifest)
    if pinned.manifest.run_id != blessing.run_id:
        raise IntegrityError(f"the blessed manifest {blessing.manifest.uri} is of run {pinned.manifest.run_id}")
    return pinned


def pin_newest(store: ArtifactStore, public_keys: dict[str, str], scan: int = 50) -> Pinned:
    """The newest run with a verified blessing of a shipping profile, pinned to its blessed manifest version."""
    for obj in manifest_objects(store)[:scan]:
        run_id = keys.run_of_manifest(obj["Key"]) or ""
        if not store.exists(keys.blessing(run_id)):
            continue
        try:
            blessing = read(store, public_keys, run_id)
        except (StorageError, IntegrityError) as exc:
            log.warning("skipping run %s: %s", run_id, exc)
            continue
        if blessing.ships:
            return _pinned(store, blessing)  # the blessing just verified, not read again
    raise StorageError(f"none of the newest {scan} runs has a signed blessing of a shipping profile: run the "
                       "nightly DAG first (test profiles such as tiny never ship unless a rollout names the run)")


def public_keys_from_env(value: str | None) -> dict[str, str]:
    """``EDGEOPS_TRUSTED_KEYS`` (comma-separated hex Ed25519 public keys: public, unlike the signing key) -> key
    id -> key, as devices pin them; an unreadable value is one ConfigError."""
    found = [k.strip() for k in (value or "").split(",") if k.strip()]
    for k in found:
        try:
            if len(bytes.fromhex(k)) != 32:
                raise ValueError("not 32 bytes")
        except ValueError as exc:
            raise ConfigError(f"{names.ENV_TRUSTED_KEYS}: {k[:16]}... is not a hex Ed25519 public key ({exc}); "
                              "`python -m scripts.devstack env` prints the accepted keys") from None
    return {key_id(k): k for k in found}


def audit(store: ArtifactStore, public_keys: dict[str, str], run_id: str) -> tuple[str, list[str]]:
    """``edgeops runs verify``'s signature half: (what the run's blessing says, problems). No blessing is not a
    problem (the gate did not bless the run); one that does not verify, or cannot be checked, is."""
    if not store.exists(keys.blessing(run_id)):
        return f"run {run_id}: no signed blessing (not blessed, or a test profile before blessings)", []
    if not public_keys:
        return "", [f"run {run_id} has a blessing, but no key to check it: set {names.ENV_TRUSTED_KEYS}"]
    try:
        pinned = pin(store, public_keys, run_id)
    except (StorageError, IntegrityError) as exc:
        return "", [str(exc)]
    newest = next(store.versions(keys.manifest(run_id)), None)
    line = (f"run {run_id}: blessing signed by a trusted key for manifest version {pinned.ref.version_id} "
            f"(sha256 {pinned.ref.sha256[:12]}…)")
    if newest != pinned.ref.version_id:
        return line, [f"manifest.json was rewritten after the gate blessed it: the newest version {newest} is not "
                      f"the blessed {pinned.ref.version_id} (only the blessed one ever ships)"]
    return line, []
