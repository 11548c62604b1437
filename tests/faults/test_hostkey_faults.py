"""Host keys: only the pinned key counts, and a wrong one stops the client before it sends any credential.

Proof is taken from the device's own sshd log: ``Accepted publickey`` lines count authenticated logins, and a
client that offered its key and was refused would leave an ``authenticating user`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient

from tasks.core.exceptions import DeviceError

REPS = 5


def _random_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _known_hosts(home: Path, port: int, key: str) -> None:
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {key}\n")


@pytest.mark.parametrize("case", ["pinned key differs", "known_hosts trusts the server, pin differs",
                                  "known_hosts differs, pin right"])
def test_only_the_pinned_key_is_trusted(device_factory: Any, env_conns: Any, figures: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    dev, _ = device_factory()
    monkeypatch.setenv("HOME", str(tmp_path))  # the worker's ~/.ssh/known_hosts, which must be ignored
    pinned, expect_ok = _random_key(), case == "known_hosts differs, pin right"
    if case == "known_hosts trusts the server, pin differs":
        _known_hosts(tmp_path, dev.port, dev.host_key)
    elif expect_ok:
        _known_hosts(tmp_path, dev.port, _random_key())
        pinned = dev.host_key
    name = env_conns(f"edgeops_device_{dev.name}k", dev.connection(host_key=pinned))
    before, passed = dev.accepted_logins(), 0
    for _ in range(REPS):
        client = DeviceClient(name, connect_attempts=1)
        if expect_ok:
            with client:
                passed += client.run("true")[0] == 0
        else:
            with pytest.raises(DeviceError, match="host key mismatch"):
                client.connect()
            passed += client.client is None
    log = dev.log.read_text(errors="replace")
    logins = dev.accepted_logins() - before
    assert "authenticating user" not in log  # no client ever got as far as offering a key and failing
    assert logins == (REPS if expect_ok else 0)
    figures(f"host key: {case}", REPS, passed, 0, f"{logins} logins authenticated")
    assert passed == REPS
