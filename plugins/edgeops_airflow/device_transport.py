"""SSH transport to one edge device through its Airflow connection, like the SSH provider's hook.

The SSH session, the pinned-host-key trust model, commands, SFTP and the device lock are
``tasks.device.transport.SshTransport``; this side only looks the connection up in Airflow. Airflow is imported
inside functions: DAG files import the operators at parse time.
"""

from __future__ import annotations

from tasks.core.exceptions import DeviceError
from tasks.device.records import OnDevice
from tasks.device.transport import ConnectionFields, SshTransport

__all__ = ["DeviceTransport", "label_for", "read_device"]


def label_for(kind: str) -> str:
    """How timings on a device of this ``kind`` are labelled: only a real Pi gives Pi numbers."""
    return {"pi": "native", "qemu": "emulated"}.get(kind, "host")


class DeviceTransport(SshTransport):
    """``with DeviceTransport("pi1", "my_garage_pi") as t: ...``; without a connection id, the device's default
    (``edgeops_device_<name>``). Connection fields: see ``SshTransport``."""

    def _lookup(self) -> ConnectionFields:
        from airflow.sdk import BaseHook

        try:
            conn = BaseHook.get_connection(self.conn_id)
        except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException and friends
            raise DeviceError(f"{self.who}: connection not found ({exc}); add it or run devstack") from exc
        return ConnectionFields(host=conn.host or "", port=conn.port, login=conn.login or "",
                                password=conn.password, extra=dict(conn.extra_dejson))


def read_device(device: str, conn_id: str) -> OnDevice:
    """What the device itself keeps: ``current`` and its releases, newest first (one SSH round trip)."""
    with DeviceTransport(device, conn_id, connect_attempts=1) as t:
        return t.on_device()
