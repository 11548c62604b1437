"""The release signer from the Airflow connection ``edgeops_signing`` (``tasks.device.signing``): read only by the
rollout's device operators, in the Airflow worker; never handed to a step, written to MinIO or sent to a device
(devices get the public keys)."""

from __future__ import annotations

from tasks.core import names
from tasks.core.exceptions import ConfigError
from tasks.device.signing import Trust, trust_from_connection


def release_trust(conn_id: str = names.SIGNING_CONN_ID) -> Trust:
    """The signer and accepted keys; a missing connection is one ConfigError that says how to make it."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException and friends: all mean "not usable"
        raise ConfigError(f"no Airflow connection {conn_id!r} (the release signing key): the dev stack creates "
                          "it; elsewhere add it: password = a hex Ed25519 seed (see tasks/device/signing.py)") from exc
    return trust_from_connection(conn.password, conn.extra_dejson)
