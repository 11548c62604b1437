"""Verify a signed release statement on the device (standalone: python3 stdlib only, like bench.py).

Installed into ``<root>/trust/`` when a device's trust is pinned (beside ``keys/<key_id>.pub``, hex Ed25519
public keys) and run by the device runtime's python **before** a staging dir becomes a release::

    python verify_release.py --trust <root>/trust --release <id> --statement STATEMENT.json [--accept] DIR

It refuses (exit 20, one line on stderr): an unknown key, a bad signature, another release id, an expired
statement, and a sequence number lower than the highest accepted for that key. Exit 21: a file of DIR does not
match the statement (missing, other sha256 or size, an unlisted file, model.tflite not the signed variant).
``--accept`` then records the sequence in ``trust/sequence.json`` (written, fsync'd, renamed, dir fsync'd).

Ed25519 verification is the RFC 8032 reference algorithm (section 6) in pure python, so the pinned runtime needs
no extra package; it handles only public data (no secret, so timing does not matter). The host-side tests check
it against ``cryptography`` on valid and tampered signatures.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

UNTRUSTED, MISMATCH = 20, 21
SEQUENCES = "sequence.json"
KEYS = "keys"
IGNORED = {"SHA256SUMS", "release.json", "STATEMENT.json"}  # records about the files, not signed files

_P = 2**255 - 19
_Q = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _add(a: tuple, b: tuple) -> tuple:
    x = (a[1] - a[0]) * (b[1] - b[0]) % _P
    y = (a[1] + a[0]) * (b[1] + b[0]) % _P
    c, d = 2 * a[3] * b[3] * _D % _P, 2 * a[2] * b[2] % _P
    e, f, g, h = y - x, d - c, d + c, y + x
    return (e * f, g * h, f * g, e * h)


def _mul(s: int, point: tuple) -> tuple:
    acc = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            acc = _add(acc, point)
        point, s = _add(point, point), s >> 1
    return acc


def _equal(a: tuple, b: tuple) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % _P == 0 and (a[1] * b[2] - b[1] * a[2]) % _P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P)
    if x2 % _P == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def _decompress(raw: bytes) -> tuple | None:
    y = int.from_bytes(raw, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _recover_x(_GY, 0)
_G = (_GX, _GY, 1, _GX * _GY % _P)


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 Ed25519 signature check (non-canonical S is rejected)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decompress(public), _decompress(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _Q:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _Q
    return _equal(_mul(s, _G), _add(r, _mul(h, a)))


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def open_statement(doc: dict, keys: dict[str, bytes]) -> dict:
    """The signed payload of a statement document, after the key and signature checks (Refused otherwise)."""
    key_id, payload = doc.get("key_id"), doc.get("payload")
    if not isinstance(key_id, str) or key_id not in keys:
        raise Refused(UNTRUSTED, f"unknown key {key_id!r}: the device trusts {sorted(keys)}")
    if not isinstance(payload, str) or not ed25519_verify(keys[key_id], payload.encode(),
                                                          bytes.fromhex(str(doc.get("signature", "")))):
        raise Refused(UNTRUSTED, f"bad signature (key {key_id})")
    return json.loads(payload)


def check_files(directory: str, payload: dict) -> None:
    """Every signed file is there with its sha256 and size, nothing else is, model.tflite is the signed variant."""
    listed = {f["name"]: f for f in payload["files"]}
    for name, entry in listed.items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path) or os.path.islink(path):
            raise Refused(MISMATCH, f"{name}: missing")
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        if digest != entry["sha256"] or os.path.getsize(path) != entry["size"]:
            raise Refused(MISMATCH, f"{name}: sha256/size differ from the signed statement")
    extra = sorted(set(os.listdir(directory)) - set(listed) - IGNORED - {"model.tflite"})
    if extra:
        raise Refused(MISMATCH, f"files not in the signed statement: {extra}")
    link = os.path.join(directory, "model.tflite")
    if not os.path.islink(link) or os.readlink(link) != f"{payload['variant']}.tflite":
        raise Refused(MISMATCH, f"model.tflite is not the signed variant {payload['variant']!r}")


def _fsync_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_keys(trust: str) -> dict[str, bytes]:
    folder = os.path.join(trust, KEYS)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    return {n[:-4]: bytes.fromhex(open(os.path.join(folder, n)).read().strip()) for n in names if n.endswith(".pub")}


def verify(trust: str, release: str, statement: str, directory: str, accept: bool, now: float) -> dict:
    """All checks of the module docstring; returns the payload (Refused on the first failure)."""
    with open(statement) as fh:
        doc = json.load(fh)
    payload = open_statement(doc, load_keys(trust))
    if payload.get("release") != release:
        raise Refused(UNTRUSTED, f"signed for release {payload.get('release')!r}, not {release!r}")
    if not payload["issued_at"] <= now + 300 or now >= payload["expires_at"]:
        raise Refused(UNTRUSTED, f"expired or not yet valid (issued {payload['issued_at']}, expires "
                                 f"{payload['expires_at']}, device time {int(now)}): sign a new statement")
    seq_path = os.path.join(trust, SEQUENCES)
    seen = json.load(open(seq_path)) if os.path.exists(seq_path) else {}
    highest = int(seen.get(doc["key_id"], -1))
    if payload["sequence"] < highest:
        raise Refused(UNTRUSTED, f"sequence {payload['sequence']} is lower than {highest}, the highest this device "
                                 f"accepted for key {doc['key_id']}: a replay of an older release")
    check_files(directory, payload)
    if accept and payload["sequence"] > highest:
        _fsync_write(seq_path, json.dumps({**seen, doc["key_id"]: payload["sequence"]}, sort_keys=True))
    return payload


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="verify a signed release statement")
    for flag in ("--trust", "--release", "--statement"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--accept", action="store_true")
    parser.add_argument("directory")
    args = parser.parse_args(argv)
    try:
        payload = verify(args.trust, args.release, args.statement, args.directory, args.accept, time.time())
    except Refused as exc:
        print(f"release refused: {exc}", file=sys.stderr)
        return exc.code
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"release refused: unreadable statement or trust dir: {type(exc).__name__}: {exc}", file=sys.stderr)
        return UNTRUSTED
    print(json.dumps({"release": payload["release"], "sequence": payload["sequence"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
