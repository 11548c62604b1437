"""Signed release statements: the device's pure-python verifier against `cryptography`, and every refusal."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from tasks.core.exceptions import IntegrityError
from tasks.core.results import FileEntry
from tasks.device import signing, verify_release
from tasks.device.verify_release import MISMATCH, UNTRUSTED, Refused


def _release(tmp: Path) -> tuple[Path, tuple[FileEntry, ...]]:
    rel = tmp / "rel"
    rel.mkdir()
    entries = []
    for name, data in {"fp32.tflite": b"model" * 50, "sample.npz": b"npz", "bench.py": b"print()"}.items():
        (rel / name).write_bytes(data)
        entries.append(FileEntry(name, hashlib.sha256(data).hexdigest(), len(data)))
    os.symlink("fp32.tflite", rel / "model.tflite")
    (rel / "SHA256SUMS").write_text("")
    return rel, tuple(entries)


def _pin(tmp: Path, trust: signing.Trust) -> str:
    keys = tmp / "trust" / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    for kid, pub in trust.public_keys().items():
        (keys / f"{kid}.pub").write_text(pub)
    return str(tmp / "trust")


def _write(tmp: Path, doc: dict, name: str = "STATEMENT.json") -> str:
    (tmp / name).write_text(json.dumps(doc))
    return str(tmp / name)


def test_pure_python_verify_agrees_with_cryptography() -> None:
    trust = signing.Trust(signing.generate()[0])
    for n in range(5):
        doc = trust.sign({"n": n})
        pub, msg, sig = bytes.fromhex(trust.public_hex), doc["payload"].encode(), bytes.fromhex(doc["signature"])
        assert verify_release.ed25519_verify(pub, msg, sig)
        assert not verify_release.ed25519_verify(pub, msg + b" ", sig)
        bad = bytearray(sig)
        bad[n] ^= 1
        assert not verify_release.ed25519_verify(pub, msg, bytes(bad))


def test_accepts_then_refuses_replay_expiry_other_key_and_damage(tmp_path: Path) -> None:
    trust = signing.Trust(signing.generate()[0])
    rel, files = _release(tmp_path)
    tdir = _pin(tmp_path, trust)
    old = _write(tmp_path, trust.statement("r1", "run", "fp32", files, {"fleet": "f", "groups": ["g"]}), "old.json")
    time.sleep(0.001)
    new = _write(tmp_path, trust.statement("r1", "run", "fp32", files, {"fleet": "f", "groups": ["g"]}))
    assert verify_release.verify(tdir, "r1", new, str(rel), True, time.time())["release"] == "r1"
    with pytest.raises(Refused, match="replay") as replay:
        verify_release.verify(tdir, "r1", old, str(rel), True, time.time())
    assert replay.value.code == UNTRUSTED
    expired = _write(tmp_path, trust.statement("r1", "run", "fp32", files, {}, now=time.time() - 7200, ttl_s=3600),
                     "expired.json")
    with pytest.raises(Refused, match="expired"):
        verify_release.verify(tdir, "r1", expired, str(rel), True, time.time())
    other = _write(tmp_path, signing.Trust(signing.generate()[0]).statement("r1", "run", "fp32", files, {}), "o.json")
    with pytest.raises(Refused, match="unknown key"):
        verify_release.verify(tdir, "r1", other, str(rel), True, time.time())
    with pytest.raises(Refused, match="not 'r2'"):
        verify_release.verify(tdir, "r2", new, str(rel), True, time.time())
    (rel / "sample.npz").write_bytes(b"npZ")
    with pytest.raises(Refused) as damaged:
        verify_release.verify(tdir, "r1", new, str(rel), True, time.time())
    assert damaged.value.code == MISMATCH


def test_a_rollback_is_resigned_with_a_higher_sequence_and_rotation_keeps_both_keys(tmp_path: Path) -> None:
    trust = signing.Trust(signing.generate()[0])
    rel, files = _release(tmp_path)
    first = trust.statement("r1", "run", "fp32", files, {})
    rotated = signing.rotated(trust)
    tdir = _pin(tmp_path, rotated)
    assert set(rotated.public_keys()) == {trust.key_id, rotated.key_id}
    again = rotated.resign(first)
    assert json.loads(again["payload"])["sequence"] > json.loads(first["payload"])["sequence"]
    assert again["key_id"] == rotated.key_id
    verify_release.verify(tdir, "r1", _write(tmp_path, first), str(rel), True, time.time())  # old key, still ok
    assert set(signing.rotated(rotated, finish=True).public_keys()) == {rotated.key_id}
    forged = {**first, "payload": first["payload"].replace('"fp32"', '"int8"')}
    with pytest.raises(IntegrityError, match="bad signature"):
        trust.open(forged)
