"""Host keys: only the pinned key counts, and a wrong one stops the client before it sends any credential.

Proof is taken from the device's own sshd log: ``Accepted publickey`` lines count authenticated logins, and a
client that offered its key and was refused would leave an ``authenticating user`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from edgeops_airflow.device import DeviceClient

from tasks.core.exceptions import DeviceError, HostKeyError

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


def test_a_wrong_host_key_fails_the_device_task_without_retry(device_factory: Any, env_conns: Any,
                                                              figures: Any) -> None:
    """Through the operators (the rollout's device tasks): AirflowFailException, which Airflow never retries,
    naming the HostKeyError; no login reaches the device."""
    from airflow.sdk.exceptions import AirflowFailException
    from edgeops_airflow.device_operators import DeviceBenchmarkOperator, DeviceSwitchOperator

    from tasks.core.config import load_config
    from tasks.core.results import DeployResult
    from tasks.device.runtime import RuntimeOptions
    from tasks.fleet.records import DeviceTask

    dev, _ = device_factory()
    conn = f"edgeops_device_{dev.name}w"
    env_conns(conn, dev.connection(host_key=_random_key()))
    common = {"rollout_id": "fault-hostkey", "config": load_config("tiny").to_dict()}
    task = DeviceTask(device=dev.name, group="sim", wave=0, connection=conn, runtime=RuntimeOptions(threads=1),
                      release="r1.fp32")
    deployed = DeployResult(dev.name, "x86_64", "r1.fp32", "fp32", None, ("fp32",), (), {}, connection=conn)
    operators = [DeviceSwitchOperator(task_id="switch", target=task.to_xcom(), **common),
                 DeviceBenchmarkOperator(task_id="benchmark", deploy=deployed.to_xcom(), **common)]
    before, passed = dev.accepted_logins(), 0
    for op in operators:
        with pytest.raises(AirflowFailException, match="HostKeyError: .*host key mismatch") as caught:
            op.execute({})
        passed += isinstance(caught.value.__context__, HostKeyError)
    logins = dev.accepted_logins() - before
    figures("host key mismatch: task fails, no retry", len(operators), passed, 0, f"{logins} logins authenticated")
    assert passed == len(operators) and logins == 0
