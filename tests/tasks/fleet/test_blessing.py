"""The signed blessing (tasks/fleet/blessing.py): what verifies, and each way it is refused."""

from __future__ import annotations

import pytest

from tasks.core.exceptions import ConfigError, IntegrityError
from tasks.core.results import ArtifactRef
from tasks.device import signing
from tasks.fleet import blessing

REF = ArtifactRef("s3://artifacts/runs/r1/manifest.json", "ab" * 32, 1234, "v-1")


def _blessing(run_id: str = "r1") -> blessing.Blessing:
    return blessing.Blessing(run_id, REF, ("int8", "fp16"), "int8", "demo", True, "2026-12-02T00:00:00+00:00")


def test_a_blessing_round_trips_through_its_signature() -> None:
    trust = signing.Trust(signing.generate()[0])
    doc = blessing.sign(trust, _blessing())
    assert blessing.open_doc(doc, trust.public_keys(), "r1") == _blessing()


def test_another_key_another_run_or_a_release_statement_is_refused() -> None:
    trust, other = signing.Trust(signing.generate()[0]), signing.Trust(signing.generate()[0])
    with pytest.raises(IntegrityError, match="does not verify: unknown key"):
        blessing.open_doc(blessing.sign(other, _blessing()), trust.public_keys(), "r1")
    with pytest.raises(IntegrityError, match="is a blessing of 'r2'"):
        blessing.open_doc(blessing.sign(trust, _blessing("r2")), trust.public_keys(), "r1")
    statement = trust.statement("r1.int8", "r1", "int8", (), {"fleet": "f"})
    with pytest.raises(IntegrityError, match="not of run r1"):
        blessing.open_doc(statement, trust.public_keys(), "r1")
    tampered = {**blessing.sign(trust, _blessing()), "payload": blessing.sign(trust, _blessing("r1"))["payload"]
                .replace('"ships":true', '"ships":false')}
    with pytest.raises(IntegrityError, match="bad signature"):
        blessing.open_doc(tampered, trust.public_keys(), "r1")
    with pytest.raises(IntegrityError, match="does not verify"):
        blessing.open_doc("not a document", trust.public_keys(), "r1")


def test_a_device_refuses_a_blessing_as_a_release_statement(tmp_path) -> None:
    """A blessing cannot stand in for a release statement: it names no release."""
    import json

    from tasks.device import verify_release

    trust = signing.Trust(signing.generate()[0])
    (tmp_path / "trust" / "keys").mkdir(parents=True)
    for kid, pub in trust.public_keys().items():
        (tmp_path / "trust" / "keys" / f"{kid}.pub").write_text(pub)
    (tmp_path / "STATEMENT.json").write_text(json.dumps(blessing.sign(trust, _blessing())))
    (tmp_path / "rel").mkdir()
    with pytest.raises(verify_release.Refused, match="signed for release None"):
        verify_release.verify(str(tmp_path / "trust"), "r1.int8", str(tmp_path / "STATEMENT.json"),
                              str(tmp_path / "rel"), False, 0.0)


def test_trusted_keys_from_the_environment() -> None:
    trust = signing.Trust(signing.generate()[0])
    assert blessing.public_keys_from_env(trust.public_hex) == trust.public_keys()
    assert blessing.public_keys_from_env("") == {}
    with pytest.raises(ConfigError, match="EDGEOPS_TRUSTED_KEYS: .* is not a hex Ed25519 public key"):
        blessing.public_keys_from_env(trust.private_hex[:10])
