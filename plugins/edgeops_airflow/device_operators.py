"""Operators that ship a gate's blessed TFLite variants to one device and benchmark them there.

Both follow the SSH provider's pattern: connection-driven, clients built in ``execute`` (never at DAG parse
time), the SSH session closed in ``on_kill``. Their inputs and outputs are the declared records of
``tasks.results`` and every knob comes from the run's resolved ``PipelineConfig`` (no defaults here).
Fatal errors (a corrupt artifact, a conflicting release, a delegate that does not load) fail the task without
retrying. ``runtime`` (optional, templated) is the device group's ``RuntimeOptions.to_dict()``: threads,
delegate, delegate_options; without it the smoke test runs XNNPACK on one thread and the benchmark XNNPACK with
``bench.threads``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from edgeops_airflow.device_transport import DeviceTransport, label_for
from tasks import keys
from tasks.names import ARTIFACTS_BUCKET, MINIO_CONN_ID


def _fail(message: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)  # bad input or corrupt data: retrying cannot help


class _DeviceOperator(BaseOperator):
    ui_color = "#fdf1e0"

    def __init__(self, *, run_id: str, config: Any, artifacts_conn_id: str = MINIO_CONN_ID,
                 bucket: str = ARTIFACTS_BUCKET, runtime: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_id, self.config, self.runtime = run_id, config, runtime
        self.artifacts_conn_id, self.bucket = artifacts_conn_id, bucket
        self._transport: DeviceTransport | None = None

    def _store(self) -> Any:
        from edgeops_airflow.store import artifact_store

        return artifact_store(self.artifacts_conn_id, self.bucket)

    def _pipeline_config(self) -> Any:
        from tasks.config import PipelineConfig
        from tasks.exceptions import ConfigError

        try:
            return PipelineConfig.from_dict(dict(self.config or {}))
        except ConfigError as exc:
            _fail(f"resolved config is invalid: {exc}")

    def _runtime_options(self) -> Any:
        """The templated ``runtime`` (a dict, or its JSON) as RuntimeOptions; None keeps the defaults."""
        from tasks.device.runtime import RuntimeOptions
        from tasks.exceptions import ConfigError

        if self.runtime in (None, "", {}):
            return None
        try:
            raw = json.loads(self.runtime) if isinstance(self.runtime, str) else self.runtime
            return RuntimeOptions.from_dict(raw)
        except (ValueError, ConfigError) as exc:
            _fail(f"runtime {self.runtime!r} is invalid: {exc}")

    def _fatal(self, fn: Any, *args: Any) -> Any:
        """Call fn; a FatalError (corrupt artifact, release conflict) becomes a non-retried task failure."""
        from tasks.exceptions import FatalError

        try:
            return fn(*args)
        except FatalError as exc:
            _fail(f"{type(exc).__name__}: {exc}")

    def on_kill(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self.log.info("SSH session to %s closed", self._transport.device)


class DeviceDeployOperator(_DeviceOperator):
    """Fetch the verdict's variants and sample (sha256 + version verified), provision, deploy; -> DeployResult.

    ``verdict`` is the gate's ``GateVerdict`` XCom, ``config`` the resolved config dict. Skipped when the
    verdict is not blessed or does not name this device.
    """

    template_fields: Sequence[str] = ("device", "run_id", "verdict", "config", "runtime")

    def __init__(self, *, device: str, verdict: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device, self.verdict = device, verdict

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from edgeops_airflow.device_release import DeviceReleases
        from edgeops_airflow.device_runtime import DeviceRuntime
        from tasks.results import DeployResult, FileEntry, GateVerdict

        verdict = GateVerdict.from_xcom(self.verdict)
        cfg, options = self._pipeline_config(), self._runtime_options()
        if not verdict.blessed:
            raise AirflowSkipException(f"run {self.run_id} not blessed: {'; '.join(verdict.reasons)}")
        if self.device not in verdict.devices:
            raise AirflowSkipException(f"device {self.device} is not in the verdict's devices {verdict.devices}")
        store = self._store()
        with tempfile.TemporaryDirectory(prefix=f"edgeops-deploy-{self.device}-") as tmp:
            files: dict[str, str | Path] = {}
            refs = {**{f"{m}.tflite": verdict.tflite[m] for m in verdict.deploy}, "sample.npz": verdict.sample}
            for name, ref in refs.items():
                files[name] = self._fatal(store.fetch, ref, Path(tmp) / name)
            files["bench.py"] = Path(tmp) / "bench.py"  # the standalone script shipped with every release
            files["bench.py"].write_bytes(resources.files("tasks.device").joinpath("bench.py").read_bytes())
            self._transport = DeviceTransport(self.device)
            with self._transport as transport:
                runtime_ops = DeviceRuntime(transport, cfg.deploy)
                facts = runtime_ops.facts()
                self.log.info("%s: %s", self.device, facts)
                runtime = runtime_ops.provision()
                result = self._fatal(DeviceReleases(transport, cfg.deploy).deploy, self.run_id, files, verdict.current,
                                     options)
        deployed = DeployResult(
            device=self.device, arch=facts["arch"], release=result["release"],
            current_variant=result["current_variant"], previous=result["previous"], modes=tuple(verdict.deploy),
            files=tuple(FileEntry(**f) for f in result["files"]), runtime=runtime["packages"],
            reused=result["reused"],
        )
        self.log.info("%s", deployed.summary())
        return deployed.to_xcom()


class DeviceBenchmarkOperator(_DeviceOperator):
    """Run the release's bench.py on the device over every deployed mode; store the JSON; -> BenchmarkResult.

    ``deploy`` is DeviceDeployOperator's ``DeployResult`` XCom (it names the device and the release).
    """

    template_fields: Sequence[str] = ("run_id", "deploy", "config", "runtime")

    def __init__(self, *, deploy: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deploy = deploy

    def execute(self, context: Any) -> dict[str, Any]:
        from edgeops_airflow.device_release import DeviceReleases
        from tasks.results import BenchmarkResult, DeployResult, ModelBench

        deployed = DeployResult.from_xcom(self.deploy)
        cfg, options = self._pipeline_config(), self._runtime_options()
        if deployed.release != self.run_id:
            _fail(f"deploy result names release {deployed.release}, this run is {self.run_id}")
        self._transport = DeviceTransport(deployed.device)
        label = label_for(self._transport.kind)
        with self._transport as transport:
            doc = self._fatal(DeviceReleases(transport, cfg.deploy).benchmark, deployed.release,
                              list(deployed.modes), cfg.bench, label, options)
        record = {**doc, "name": deployed.device, "release": deployed.release,
                  "current_variant": deployed.current_variant, "files": [f.to_xcom() for f in deployed.files]}
        store = self._store()
        written = store.put_json(keys.device(self.run_id, deployed.device), record)
        result = BenchmarkResult(
            device=deployed.device, arch=doc["device"]["arch"], release=deployed.release,
            current_variant=deployed.current_variant, label=doc["label"], record=store.ref(written),
            models={mode: ModelBench.from_bench(r) for mode, r in doc["results"].items()}, facts=doc["device"],
        )
        self.log.info("%s", result.summary())
        return result.to_xcom()
