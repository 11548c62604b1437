"""What a device offers for collection: one command over SSH lists edgeops-serve's finished files.

The listing runs the device's system python (standard library only): telemetry files whose JSON says
``"final": true``, hashed on the device, and every ``*.npz`` sample (its sha256 is in its name). Dot files are
writes in progress and are never listed. Names are checked here, on the platform side: anything that is not a
name edgeops-serve writes (``tasks/device/serve_records.py``) is reported as unsafe and never touched, so a device
cannot steer a key or a remote path (no ``..``, no ``/``, no shell characters).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from shlex import quote
from typing import Any

from tasks.core.exceptions import DeviceError
from tasks.device import layout

TELEMETRY, SAMPLE = "telemetry", "sample"
RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,250}$")  # a release id (<run key>.<variant>)
_TELEMETRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.json$")
_SAMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}-(?:low|reservoir)-(?P<sha>[0-9a-f]{64})\.npz$")

# argv[1] = the state dir; prints one JSON line {"telemetry": [[release, name, size, sha256]], "samples": [...]}
_LIST = r"""
import hashlib, json, os, sys
root = sys.argv[1]
out = {"telemetry": [], "samples": []}
def files(kind, suffix):
    base = os.path.join(root, kind)
    try:
        releases = sorted(os.listdir(base))
    except OSError:
        return
    for rel in releases:
        d = os.path.join(base, rel)
        if rel.startswith(".") or not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.startswith(".") and name.endswith(suffix):
                yield rel, name, os.path.join(d, name)
for rel, name, path in files("telemetry", ".json"):
    try:
        with open(path, "rb") as f:
            data = f.read()
        final = json.loads(data).get("final") is True
    except (OSError, ValueError, AttributeError):
        continue
    if final:
        out["telemetry"].append([rel, name, len(data), hashlib.sha256(data).hexdigest()])
for rel, name, path in files("samples", ".npz"):
    try:
        out["samples"].append([rel, name, os.stat(path).st_size])
    except OSError:
        continue
print(json.dumps(out))
"""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class DeviceFile:
    """One file to collect: ``remote`` is its path relative to the service's state dir."""

    kind: str  # TELEMETRY | SAMPLE
    release: str
    name: str
    size: int
    sha256: str  # telemetry: hashed on the device; sample: from its name

    @property
    def remote(self) -> str:
        folder = layout.SERVE_TELEMETRY if self.kind == TELEMETRY else layout.SERVE_SAMPLES
        return f"{folder}/{self.release}/{self.name}"


@dataclass(frozen=True)
class Listing:
    """The files to take, telemetry first, and the entries refused for their names."""

    files: tuple[DeviceFile, ...]
    unsafe: tuple[str, ...]


def list_device(transport: Any, state: str) -> Listing:
    """One SSH round trip: the final telemetry and the samples under ``state`` (``<deploy_root>/serve-data``)."""
    raw = transport.json(f"{quote(transport.python)} -c {quote(_LIST)} {quote(state)}",
                         what="listing edgeops-serve's telemetry and samples", timeout=300)
    return parse_listing(raw, transport.who)


def parse_listing(raw: Any, who: str = "device") -> Listing:
    """The device's JSON -> a Listing; entries with names edgeops-serve does not write go to ``unsafe``."""
    try:
        telemetry = [(str(r), str(n), int(s), str(h)) for r, n, s, h in raw["telemetry"]]
        samples = [(str(r), str(n), int(s)) for r, n, s in raw["samples"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise DeviceError(f"{who}: the collection listing is malformed ({exc!r}): {str(raw)[:200]}") from None
    files, unsafe = [], []
    for release, name, size, digest in telemetry:
        ok = RELEASE.match(release) and _TELEMETRY_NAME.match(name) and re.fullmatch(r"[0-9a-f]{64}", digest)
        if ok:
            files.append(DeviceFile(TELEMETRY, release, name, size, digest))
        else:
            unsafe.append(f"{layout.SERVE_TELEMETRY}/{release}/{name}")
    for release, name, size in samples:
        match = _SAMPLE_NAME.match(name) if RELEASE.match(release) else None
        if match:
            files.append(DeviceFile(SAMPLE, release, name, size, match["sha"]))
        else:
            unsafe.append(f"{layout.SERVE_SAMPLES}/{release}/{name}")
    return Listing(tuple(files), tuple(unsafe))
