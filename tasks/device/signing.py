"""Signed release statements: what the release signer (Airflow, holding the key) signs and a device verifies.

A statement names one release: run id, every file with sha256 and size, the variant behind ``model.tflite``, a
sequence number (microseconds since the epoch at signing: it only grows, so a device can refuse an older
statement), issued-at and expires-at (unix seconds), the scope (fleet, groups) and the pinned manifest
version. The document on the device (``STATEMENT.json``) is ``{"key_id", "payload", "signature"}`` where
``payload`` is the exact signed JSON text (nothing is re-serialised before verifying).

The private key lives only in the Airflow connection ``edgeops_signing`` (password: the hex Ed25519 seed;
extra ``{"accepted": [hex public keys of the previous key during a rotation], "ttl_s": ...}``), never in a
step's environment, MinIO or a device. Devices get the public keys (``<root>/trust/keys/<key_id>.pub``) and
``verify_release.py``. Airflow-free: the plugin reads the connection and hands over ``Trust``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tasks.core.exceptions import ConfigError, IntegrityError
from tasks.core.results import ArtifactRef, FileEntry
from tasks.device import verify_release

DEFAULT_TTL_S = 24 * 3600  # a statement must reach the device within a day of signing
SCHEMA = 1


def key_id(public_hex: str) -> str:
    """A short, stable name of a public key (its file name on devices)."""
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


def generate() -> tuple[str, str]:
    """A new Ed25519 key pair as (private seed hex, public key hex)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    return private.private_bytes_raw().hex(), private.public_key().public_bytes_raw().hex()


def public_of(private_hex: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex.strip()))
    except ValueError as exc:
        raise ConfigError(f"the signing key is not a hex Ed25519 seed (64 hex digits): {exc}") from None
    return private.public_key().public_bytes_raw().hex()


@dataclass(frozen=True)
class Trust:
    """The release signer (one private key) and every public key devices accept (the signer's + a rotation's
    previous one)."""

    private_hex: str = field(repr=False)
    accepted: tuple[str, ...] = ()  # public keys besides the signer's (previous keys during a rotation)
    ttl_s: int = DEFAULT_TTL_S

    @property
    def public_hex(self) -> str:
        return public_of(self.private_hex)

    @property
    def key_id(self) -> str:
        return key_id(self.public_hex)

    def public_keys(self) -> dict[str, str]:
        """key id -> public key hex of every accepted key (what a device pins)."""
        return {key_id(k): k for k in (self.public_hex, *self.accepted)}

    def sign(self, payload: dict[str, Any]) -> dict[str, Any]:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        signature = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(self.private_hex)).sign(text.encode())
        return {"key_id": self.key_id, "payload": text, "signature": signature.hex()}

    def statement(self, release: str, run_id: str, variant: str, files: Iterable[FileEntry],
                  scope: dict[str, Any], manifest: ArtifactRef | None = None, now: float | None = None,
                  ttl_s: int | None = None) -> dict[str, Any]:
        """A signed statement for one release (see the module docstring)."""
        now = time.time() if now is None else now
        payload = {
            "schema": SCHEMA, "release": release, "run_id": run_id, "variant": variant,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size_bytes} for f in files],
            "sequence": time.time_ns() // 1000, "issued_at": int(now), "expires_at": int(now + (ttl_s or self.ttl_s)),
            "scope": scope, "manifest": manifest.to_xcom() if manifest else None,
        }
        return self.sign(payload)

    def resign(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A deliberate rollback: the kept release's statement (checked against the accepted keys first) signed
        again with a new sequence number and validity."""
        payload = self.open(doc)
        now = time.time()
        return self.sign({**payload, "sequence": time.time_ns() // 1000, "issued_at": int(now),
                          "expires_at": int(now + self.ttl_s)})

    def open(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The payload of a statement signed by an accepted key; IntegrityError otherwise."""
        keys = {k: bytes.fromhex(v) for k, v in self.public_keys().items()}
        try:
            return verify_release.open_statement(doc, keys)
        except (verify_release.Refused, ValueError) as exc:
            raise IntegrityError(f"release statement refused: {exc}") from None


def trust_from_connection(password: str | None, extra: dict[str, Any]) -> Trust:
    """The ``edgeops_signing`` connection's fields -> Trust; one ConfigError says what to fix."""
    if not password:
        raise ConfigError("connection edgeops_signing has no password: put the hex Ed25519 seed there "
                          "(the dev stack creates one; `python -m scripts.devstack rotate-key` rotates it)")
    accepted = extra.get("accepted", [])
    if not isinstance(accepted, list) or not all(isinstance(k, str) and len(k) == 64 for k in accepted):
        raise ConfigError("connection edgeops_signing: extra.accepted must be a list of hex Ed25519 public keys")
    trust = Trust(password.strip(), tuple(accepted), int(extra.get("ttl_s", DEFAULT_TTL_S)))
    trust.public_hex  # noqa: B018 - validates the seed now, with its clear error
    return trust


def connection_doc(trust: Trust) -> dict[str, Any]:
    """The Airflow connection (JSON form) holding ``trust``."""
    return {"conn_type": "generic", "password": trust.private_hex,
            "extra": json.dumps({"accepted": list(trust.accepted), "ttl_s": trust.ttl_s})}


def rotated(trust: Trust, finish: bool = False) -> Trust:
    """Rotation, step 1: a new signing key; the old public key stays accepted (devices take both). Step 2
    (``finish``): drop every key but the signer's, once every device was deployed with the new key."""
    if finish:
        return Trust(trust.private_hex, (), trust.ttl_s)
    private, _ = generate()
    return Trust(private, (trust.public_hex,), trust.ttl_s)
