"""The collect DAG's pieces: the device list to map over, the operator that collects one device, and the drift
check that ends the DAG (one ``edgeops_drift`` asset event per drifting device and release, a notice when a
device starts drifting).

``DeviceCollectOperator`` reaches its device through the connection the fleet inventory names for it (as the
rollout's device operators do) and calls ``tasks.fleet.collect.collect_device``; the work and the exactly-once
rules live there. An optional device that is offline is skipped; any other failure is retried: a re-run takes
what the failed one left on the device, and uploads nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseOperator

from edgeops_airflow.device_transport import DeviceTransport
from edgeops_airflow.new_data import asset_uri
from edgeops_airflow.ui.links import DEVICE_LINKS, persist_device_link
from tasks.core import names
from tasks.core.names import ARTIFACTS_BUCKET, MINIO_CONN_ID


def drift_asset() -> Asset:
    """One event per drifting (device, release) each hour it drifts; extra: the ``DriftVerdict``. Schedule a DAG
    on it (e.g. the nightly, to retrain) with ``schedule=Asset(name="edgeops_drift")`` or in an asset condition."""
    return Asset(name=names.DRIFT_ASSET, uri=asset_uri(names.ARTIFACTS_BUCKET, "telemetry"))


def drift_alias() -> AssetAlias:
    """The drift task's outlet: through an alias one task instance emits several events of the drift asset."""
    return AssetAlias(name=names.DRIFT_ALIAS)


def check_drift(context: Any) -> list[dict[str, Any]]:
    """Every device's current release against its test split (``tasks.fleet.drift``): record each verdict,
    emit an event per drifting one, notify the ones that newly drift. Returns every verdict (XCom)."""
    from edgeops_airflow.notify import Notice, deliver
    from edgeops_airflow.store import artifact_store
    from tasks.core import keys
    from tasks.fleet import drift
    from tasks.fleet.inventory import load_inventory

    store = artifact_store(MINIO_CONN_ID, ARTIFACTS_BUCKET)
    verdicts = drift.check_fleet(store, load_inventory())
    for v in verdicts:
        logging.getLogger(__name__).info("drift %s %s: %s n=%d %s", v.device, v.release, v.status, v.n, v.reason)
        if v.status == drift.DRIFT:
            context["outlet_events"][drift_alias()].add(drift_asset(), extra=v.to_xcom())
    for v in drift.record(store, verdicts):
        deliver(Notice("drift", f"device {v.device}: release {v.release} drifts from its test split",
                       (v.reason, f"{v.n} classified requests since {v.since}"),
                       {"verdict": f"s3://{ARTIFACTS_BUCKET}/{keys.device_drift(v.device)}"}))
    return [v.to_xcom() for v in verdicts]


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
