"""The device's side of signed releases: pin the accepted public keys and the verifier, and the shell step that
runs ``verify_release.py`` (``tasks.device.verify_release``) with the device runtime's python.

A device accepts a release only when that step passes on its files: in the staging dir before the rename, in
place when a kept release is reused or rolled back to. Its exit codes become ``DeployExit.CHECKSUMS`` (a file
does not match: damaged, so it is uploaded again) or ``DeployExit.UNTRUSTED`` (refused: fatal).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from shlex import quote
from typing import Any

from edgeops_airflow.device_transport import DeviceTransport
from tasks.core.results import ArtifactRef, FileEntry
from tasks.device import layout
from tasks.device.layout import DeployExit
from tasks.device.signing import Trust
from tasks.device.verify_release import MISMATCH


@dataclass(frozen=True)
class ReleaseSigning:
    """What a deploy signs a release statement with: the signer and the statement's scope and manifest."""

    trust: Trust
    run_id: str
    scope: dict[str, Any] = field(default_factory=dict)  # {"fleet": ..., "groups": [...]}
    manifest: ArtifactRef | None = None

    def statement(self, release: str, variant: str, files: tuple[FileEntry, ...]) -> dict[str, Any]:
        return self.trust.statement(release, self.run_id, variant, files, self.scope, self.manifest)


def trust_dir(root: str) -> str:
    return posixpath.join(root, layout.TRUST)


def pin(t: DeviceTransport, root: str, trust: Trust, timeout: float) -> None:
    """Write exactly the accepted public keys and the verifier into ``<root>/trust`` (under the deploy lock)."""
    tdir = trust_dir(root)
    keys = quote(posixpath.join(tdir, layout.TRUST_KEYS))
    t.run(f"mkdir -p {keys} && rm -f {keys}/*.pub", timeout, what="pinning the trusted keys")
    verifier = Path(str(resources.files("tasks.device").joinpath(layout.VERIFIER)))
    t.put_files(tdir, {layout.VERIFIER: verifier},
                {f"{layout.TRUST_KEYS}/{kid}.pub": pub + "\n" for kid, pub in trust.public_keys().items()}, timeout)


def put_statement(t: DeviceTransport, directory: str, doc: dict[str, Any], timeout: float) -> None:
    t.put_files(directory, {}, {layout.STATEMENT: json.dumps(doc)}, timeout)


def verify_cmd(python: str, root: str, release_id: str, statement: str, directory: str = ".") -> str:
    """Verify ``statement`` against ``directory`` and accept its sequence; exit CHECKSUMS or UNTRUSTED."""
    tdir = trust_dir(root)
    return (f"{{ {quote(python)} {quote(posixpath.join(tdir, layout.VERIFIER))} --trust {quote(tdir)} "
            f"--release {quote(release_id)} --statement {quote(statement)} --accept {quote(directory)}; "
            f"rc=$?; [ $rc = 0 ] || {{ [ $rc = {MISMATCH} ] && exit {int(DeployExit.CHECKSUMS)}; "
            f"exit {int(DeployExit.UNTRUSTED)}; }}; }}")
