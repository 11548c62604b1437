"""Read a canary's telemetry for the traffic canary: what is collected in MinIO plus what is still open on the device.

edgeops-serve writes one telemetry file per release and hour; ``edgeops_collect`` only takes a file once its hour
ended (``"final": true``). A canary is judged minutes after its switch, inside the open hour, so one poke:

1. collects the device through ``tasks.fleet.collect.collect_device`` (final files to MinIO, exactly once; the
   hourly collection would do the same). A failed collection is logged: what failed stays on the device;
2. reads the newest ``KEPT`` collected files of each release from ``telemetry/<device>/<release>/``;
3. reads the device's telemetry files of those releases as they are now (open ones too, one SSH command, read
   only: nothing is deleted).

A file present in both (collected, not yet deleted) counts once: by name, the device's copy wins.
"""

from __future__ import annotations

import json
import logging
from shlex import quote
from typing import Any

from tasks.core import keys
from tasks.core.exceptions import DeviceError, EdgeOpsError
from tasks.core.storage import ArtifactStore
from tasks.device import layout
from tasks.fleet.collect_listing import RELEASE
from tasks.fleet.telemetry import FILE_NAME

log = logging.getLogger(__name__)
KEPT = 48  # files per release, newest first: two days of hourly periods

# argv: state dir, KEPT, releases...; prints {"<release>": {"<name>": doc}} (newest KEPT names, dot files skipped)
_PEEK = r"""
import json, os, sys
root, kept, out = sys.argv[1], int(sys.argv[2]), {}
for rel in sys.argv[3:]:
    d, docs = os.path.join(root, "telemetry", rel), {}
    try:
        names = sorted((n for n in os.listdir(d) if n.endswith(".json") and not n.startswith(".")), reverse=True)
    except OSError:
        names = []
    for name in names[:kept]:
        try:
            with open(os.path.join(d, name)) as f:
                docs[name] = json.load(f)
        except (OSError, ValueError):
            continue
    out[rel] = docs
print(json.dumps(out))
"""


def read_telemetry(transport: Any, store: ArtifactStore, releases: tuple[str, ...],
                   collect: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Telemetry documents per release of ``releases`` on the device of ``transport`` (see the module doc)."""
    wanted = tuple(r for r in dict.fromkeys(releases) if r)
    bad = [r for r in wanted if not RELEASE.match(r)]
    if bad:
        raise EdgeOpsError(f"not release ids: {bad}")
    if collect:
        from tasks.fleet.collect import collect_device

        try:
            result = collect_device(transport, store)
            if not result.ok:
                log.warning("%s", result.summary())
        except DeviceError:
            raise
        except EdgeOpsError as exc:  # the store: the device's own files below still count
            log.warning("%s: collection before judging the traffic failed: %s", transport.device, exc)
    on_device = _peek(transport, wanted)
    out = {}
    for release in wanted:
        docs = _collected(store, transport.device, release)
        docs.update(on_device.get(release, {}))
        out[release] = [docs[n] for n in sorted(docs)]
    return out


def _peek(transport: Any, releases: tuple[str, ...]) -> dict[str, dict[str, dict[str, Any]]]:
    state = layout.serve_data(transport.root)
    if not releases:
        return {}
    raw = transport.json(f"{quote(transport.python)} -c {quote(_PEEK)} {quote(state)} {KEPT} "
                         f"{' '.join(quote(r) for r in releases)}", what="reading edgeops-serve's telemetry",
                         timeout=120)
    if not isinstance(raw, dict):
        raise DeviceError(f"{transport.who}: telemetry read is not an object: {str(raw)[:200]}")
    return {str(r): {str(n): d for n, d in docs.items() if FILE_NAME.match(str(n)) and isinstance(d, dict)}
            for r, docs in raw.items() if isinstance(docs, dict)}


def _collected(store: ArtifactStore, device: str, release: str) -> dict[str, dict[str, Any]]:
    prefix = keys.telemetry(device, release, "")
    names = sorted((o["Key"][len(prefix):] for o in store.list(prefix)), reverse=True)
    out = {}
    for name in [n for n in names if FILE_NAME.match(n)][:KEPT]:
        try:
            doc = json.loads(store.get_bytes(prefix + name))
        except (EdgeOpsError, ValueError) as exc:
            log.warning("%s%s: not read (%s)", prefix, name, exc)
            continue
        if isinstance(doc, dict):
            out[name] = doc
    return out
