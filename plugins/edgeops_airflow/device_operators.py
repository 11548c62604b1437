"""Operators that ship blessed TFLite variants to one device and benchmark them there.

Both follow the SSH provider's pattern: connection-driven configuration, clients built in ``execute``
(never at DAG parse time), the SSH session closed in ``on_kill``. Timeouts and retries belong to the DAG.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from edgeops_airflow.device import DeviceClient, label_for
from edgeops_airflow.step_operator import plain
from tasks import keys
from tasks.names import ARTIFACTS_BUCKET, MINIO_CONN_ID


def _fail(message: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)  # bad input: retrying cannot help


def _config(raw: Any) -> Any:
    from tasks.config import PipelineConfig

    return PipelineConfig.from_dict(dict(raw))


class _DeviceOperator(BaseOperator):
    ui_color = "#fdf1e0"

    def __init__(self, *, artifacts_conn_id: str = MINIO_CONN_ID, bucket: str = ARTIFACTS_BUCKET,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.artifacts_conn_id, self.bucket = artifacts_conn_id, bucket
        self._client: DeviceClient | None = None

    def _store(self) -> Any:
        from edgeops_airflow.store import artifact_store

        return artifact_store(self.artifacts_conn_id, self.bucket)

    def on_kill(self) -> None:
        if self._client is not None:
            self._client.close()
            self.log.info("SSH session to %s closed", self._client.device)


class DeviceDeployOperator(_DeviceOperator):
    """Provision the device runtime, upload the blessed variants + sample + bench.py, switch ``current``.

    ``verdict`` is the gate's ``GateVerdict``; every file is downloaded against the sha256/version it names.
    Skipped (not failed) when the verdict blessed nothing or does not target this device.
    """

    template_fields: Sequence[str] = ("device", "run_id", "verdict", "config")

    def __init__(self, *, device: str, run_id: str, verdict: Any, config: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device, self.run_id, self.verdict, self.config = device, run_id, verdict, config

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.exceptions import IntegrityError
        from tasks.results import DeployResult, FileEntry, GateVerdict

        verdict = GateVerdict.from_xcom(plain(self.verdict))
        if not verdict.blessed or self.device not in verdict.devices:
            raise AirflowSkipException(f"nothing to deploy to {self.device}: {verdict.summary()}")
        store = self._store()
        with tempfile.TemporaryDirectory(prefix=f"edgeops-deploy-{self.device}-") as tmp:
            try:
                files: dict[str, str | Path] = {
                    f"{m}.tflite": store.fetch(verdict.tflite[m], Path(tmp) / f"{m}.tflite") for m in verdict.deploy}
                files["sample.npz"] = store.fetch(verdict.sample, Path(tmp) / "sample.npz")
            except IntegrityError as exc:
                _fail(str(exc))
            files["bench.py"] = Path(tmp) / "bench.py"  # the standalone script shipped with every release
            files["bench.py"].write_bytes(resources.files("tasks.device").joinpath("bench.py").read_bytes())
            self._client = DeviceClient(self.device)
            with self._client as dev:
                facts = dev.facts()
                self.log.info("%s: %s", self.device, facts)
                runtime = dev.provision()
                result = dev.deploy(self.run_id, files, verdict.current)
        deployed = DeployResult(device=self.device, arch=facts["arch"], release=result["release"],
                                current_variant=result["current_variant"], previous=result["previous"],
                                modes=verdict.deploy, files=tuple(FileEntry(**f) for f in result["files"]),
                                runtime=runtime["packages"])
        self.log.info("%s", deployed.summary())
        return deployed.to_xcom()


class DeviceBenchmarkOperator(_DeviceOperator):
    """Run the release's bench.py on the device over every deployed mode; store its JSON, return the record."""

    template_fields: Sequence[str] = ("run_id", "deploy", "config")

    def __init__(self, *, run_id: str, deploy: Any, config: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_id, self.deploy, self.config = run_id, deploy, config

    def execute(self, context: Any) -> dict[str, Any]:
        from tasks.results import BenchmarkResult, DeployResult, ModelBench

        deploy = DeployResult.from_xcom(plain(self.deploy))
        if deploy.release != self.run_id:
            _fail(f"deploy record names release {deploy.release}, not this run's {self.run_id}")
        bench = _config(plain(self.config)).bench
        self._client = DeviceClient(deploy.device)
        label = label_for(self._client.kind)
        with self._client as dev:
            doc = dev.benchmark(self.run_id, list(deploy.modes), bench, label)
        record = {**doc, "name": deploy.device, "release": self.run_id, "current_variant": deploy.current_variant,
                  "files": [f.to_xcom() for f in deploy.files]}
        store = self._store()
        art = store.put_json(keys.device(self.run_id, deploy.device), record)
        result = BenchmarkResult(
            device=deploy.device, arch=doc["device"]["arch"], release=self.run_id,
            current_variant=deploy.current_variant, label=doc["label"], record=store.ref(art),
            models={mode: ModelBench.from_bench(r) for mode, r in doc["results"].items()}, facts=doc["device"])
        self.log.info("%s", result.summary())
        return result.to_xcom()
