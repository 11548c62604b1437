"""The collect DAG's pieces: the device list to map over, and the operator that collects one device.

``DeviceCollectOperator`` reaches its device through the connection the fleet inventory names for it (as the
rollout's device operators do) and calls ``tasks.fleet.collect.collect_device``; the work and the exactly-once
rules live there. An optional device that is offline is skipped; any other failure is retried: a re-run takes
what the failed one left on the device, and uploads nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from edgeops_airflow.device_transport import DeviceTransport
from edgeops_airflow.ui.links import DEVICE_LINKS, persist_device_link
from tasks.core.names import ARTIFACTS_BUCKET, MINIO_CONN_ID


def collect_targets() -> list[dict[str, Any]]:
    """Every device of the fleet inventory as a mapping target (``inventory.Device`` fields)."""
    import dataclasses

    from tasks.fleet.inventory import load_inventory

    return [dataclasses.asdict(d) for d in load_inventory().devices]


class DeviceCollectOperator(BaseOperator):
    """Collect edgeops-serve's final telemetry and its samples from one device; -> ``CollectResult``.

    ``target`` is one ``inventory.Device`` (name, connection, optional); ``dataset`` ("" = each release's run's
    data.source) is where samples go, under ``_incoming/``.
    """

    template_fields: Sequence[str] = ("target", "dataset")
    ui_color = "#e0f0fd"
    operator_extra_links = DEVICE_LINKS

    def __init__(self, *, target: Any, dataset: str = "", artifacts_conn_id: str = MINIO_CONN_ID,
                 bucket: str = ARTIFACTS_BUCKET, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target, self.dataset = target, dataset
        self.artifacts_conn_id, self.bucket = artifacts_conn_id, bucket
        self._transport: DeviceTransport | None = None

    def pre_execute(self, context: Any) -> None:
        super().pre_execute(context)
        persist_device_link(context, str(self.target["name"]))

    def execute(self, context: Any) -> dict[str, Any]:
        from edgeops_airflow.store import artifact_store
        from tasks.core.exceptions import DeviceUnreachableError, EdgeOpsError
        from tasks.fleet.collect import collect_device
        from tasks.fleet.inventory import Device

        device = Device(**self.target)
        self._transport = DeviceTransport(device.name, device.connection)
        try:
            with self._transport as transport:
                record = collect_device(transport, artifact_store(self.artifacts_conn_id, self.bucket), self.dataset)
        except DeviceUnreachableError as exc:
            if not device.optional:
                raise
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{device.name} is optional and offline, not collected: {exc}") from exc
        self.log.info("%s", record.summary())
        if not record.ok:  # what failed stays on the device; the retry (or the next hour) takes it
            raise EdgeOpsError(f"{record.failed} file(s) not collected from {device.name}: {record.errors[:3]}")
        return record.to_xcom()

    def on_kill(self) -> None:
        if self._transport is not None:
            self._transport.close()
