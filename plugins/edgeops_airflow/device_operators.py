"""Operators of the rollout: ship a blessed run's TFLite variants to one device, switch it back, benchmark it.

Both follow the SSH provider's pattern: connection-driven, clients built in ``execute`` (never at DAG parse
time), the SSH session closed in ``on_kill``. Their inputs and outputs are the declared records of
``tasks.core.results`` / ``tasks.fleet.records`` and every knob comes from the shipped run's resolved
``PipelineConfig`` (no defaults here). Every switch of ``current`` writes the device's state record
(``devices/<name>/state.json``) at once, so ``edgeops fleet status`` stays right even if the rollout fails later.
Fatal errors (a corrupt artifact, a conflicting release, a missing rollback target, a delegate that does not
load) fail without retrying. The device group's runtime options (``RuntimeOptions``: threads, delegate,
delegate_options) travel typed in the ``DeviceTask`` and, after the deploy, in ``DeployResult.options``. Every
operator reaches the device through the connection the inventory names for it (``DeviceTask.connection``, then
``DeployResult.connection``), never a connection id derived from the device name.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from edgeops_airflow.device_transport import DeviceTransport, label_for
from edgeops_airflow.ui.links import DEVICE_LINKS, persist_device_link
from tasks.core import keys
from tasks.core.names import ARTIFACTS_BUCKET, MINIO_CONN_ID
from tasks.fleet.records import SwitchAction


def _fail(message: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)  # bad input or corrupt data: retrying cannot help


def _first_try(context: Any) -> bool:
    """A first attempt sees the device as the rollout found it (a retry may see its own earlier switch)."""
    ti = (context or {}).get("ti")
    return ti is not None and getattr(ti, "try_number", 1) <= 1


class _DeviceOperator(BaseOperator):
    ui_color = "#fdf1e0"
    operator_extra_links = DEVICE_LINKS  # Device record (edgeops_airflow/ui/links.py)

    def __init__(self, *, rollout_id: str, config: Any, artifacts_conn_id: str = MINIO_CONN_ID,
                 bucket: str = ARTIFACTS_BUCKET, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rollout_id, self.config = rollout_id, config
        self.artifacts_conn_id, self.bucket = artifacts_conn_id, bucket
        self._transport: DeviceTransport | None = None

    def _store(self) -> Any:
        from edgeops_airflow.store import artifact_store

        return artifact_store(self.artifacts_conn_id, self.bucket)

    def _pipeline_config(self) -> Any:
        from tasks.core.config import PipelineConfig
        from tasks.core.exceptions import ConfigError

        try:
            return PipelineConfig.from_dict(dict(self.config or {}))
        except ConfigError as exc:
            _fail(f"resolved config is invalid: {exc}")

    def _decoded(self, decode: Any, raw: Any, what: str) -> Any:
        """decode(raw); invalid runtime options (a ConfigError) fail the task without retrying."""
        from tasks.core.exceptions import ConfigError

        try:
            return decode(raw)
        except ConfigError as exc:
            _fail(f"{what} {raw!r} are invalid: {exc}")

    def _fatal(self, fn: Any, *args: Any) -> Any:
        """Call fn; a FatalError (corrupt artifact, release conflict) becomes a non-retried task failure."""
        from tasks.core.exceptions import FatalError

        try:
            return fn(*args)
        except FatalError as exc:
            _fail(f"{type(exc).__name__}: {exc}")

    def _connected(self) -> Any:
        """Connect ``self._transport``; a wrong host key (HostKeyError, a FatalError) fails the task at once, with
        no Airflow retry: every try would meet the same key."""
        assert self._transport is not None
        return self._fatal(self._transport.connect)

    def _record_state(self, target: Any, release: str | None, previous: str | None, action: str, arch: str = "",
                      variant: str = "") -> None:
        """devices/<name>/state.json right after a switch (the bucket keeps older versions as history)."""
        import datetime as dt

        from tasks.fleet.records import DeviceState, split_release

        run_id, variant_of_release = split_release(release)
        state = DeviceState(
            device=target.device, release=release, previous=previous, run_id=run_id,
            variant=variant or variant_of_release, rollout_id=self.rollout_id, action=action,
            switched_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), group=target.group, arch=arch)
        self._store().put_json(keys.device_state(target.device), state.to_xcom())

    def _subject(self) -> Any:
        """The record naming this task's device (a DeviceTask's or DeployResult's XCom): its ``device`` key."""
        return self.target

    def pre_execute(self, context: Any) -> None:
        from edgeops_airflow.reliability import fault_point

        super().pre_execute(context)
        fault_point(self.task_id)  # test-only: a transient fault before the device is touched, then a retry
        persist_device_link(context, str(self._subject()["device"]))

    def on_kill(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self.log.info("SSH session to %s closed", self._transport.device)


class DeviceDeployOperator(_DeviceOperator):
    """Fetch the target's variants and the sample (sha256 + version verified), provision, deploy; -> DeployResult.

    ``target`` is a ``DeviceTask`` (which release, which variants, which one is current, runtime options),
    ``verdict`` the shipped run's ``GateVerdict`` (the artifact refs), ``config`` its resolved config dict.
    """

    template_fields: Sequence[str] = ("target", "verdict", "rollout_id", "config", "manifest")

    def __init__(self, *, target: Any, verdict: Any, action: str = SwitchAction.DEPLOY, manifest: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target, self.verdict, self.action, self.manifest = target, verdict, action, manifest

    @property
    def _manifest(self) -> Any:
        """The pinned manifest version the signed statement names (the plan's ``manifest``), if given."""
        from tasks.core.results import ArtifactRef

        return ArtifactRef.from_xcom(self.manifest) if self.manifest else None

    def _connect(self, target: Any) -> DeviceTransport:
        """The connected transport; an optional device that does not answer skips this deploy (no retry): it
        keeps its release, and the rollout records it ``skipped`` without counting it against max_failed."""
        from tasks.core.exceptions import DeviceUnreachableError

        self._transport = DeviceTransport(target.device, target.connection)
        try:
            return self._connected()
        except DeviceUnreachableError as exc:
            if not target.optional:
                raise
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"{target.device} is optional and offline, skipped: {exc}") from exc

    def execute(self, context: Any) -> dict[str, Any]:
        from edgeops_airflow.device_release import DeviceReleases
        from edgeops_airflow.device_runtime import DeviceRuntime
        from edgeops_airflow.device_trust import ReleaseSigning
        from edgeops_airflow.signing import release_trust
        from tasks.core.results import DeployResult
        from tasks.core.verdict import GateVerdict
        from tasks.fleet.records import DeviceTask

        target = self._decoded(DeviceTask.from_xcom, self.target, "device task")
        verdict = GateVerdict.from_xcom(self.verdict)
        cfg = self._pipeline_config()
        missing = [m for m in target.modes if m not in verdict.tflite]
        if missing or not target.release:
            _fail(f"{target.summary()}: nothing to deploy (variants {missing} not in the run's artifacts)")
        store = self._store()
        with tempfile.TemporaryDirectory(prefix=f"edgeops-deploy-{target.device}-") as tmp:
            files: dict[str, str | Path] = {}
            refs = {**{f"{m}.tflite": verdict.tflite[m] for m in target.modes}, "sample.npz": verdict.sample}
            for name, ref in refs.items():
                files[name] = self._fatal(store.fetch, ref, Path(tmp) / name)
            files["bench.py"] = Path(tmp) / "bench.py"  # the standalone script shipped with every release
            files["bench.py"].write_bytes(resources.files("tasks.device").joinpath("bench.py").read_bytes())
            with self._connect(target) as transport:
                runtime_ops = DeviceRuntime(transport, cfg.deploy)
                facts = runtime_ops.facts()
                self.log.info("%s: %s", target.device, facts.summary())
                runtime = runtime_ops.provision()
                releases = DeviceReleases(transport, cfg.deploy)
                before = releases.current_release() if _first_try(context) else None
                signing = ReleaseSigning(self._fatal(release_trust), target.run_id or target.release,
                                         {"groups": [target.group]}, self._manifest)
                result = self._fatal(releases.deploy, target.release, files, target.current, target.runtime, signing,
                                     target.app)
                if before == target.release:  # it already ran this very release: switching back = staying
                    result = dataclasses.replace(result, previous=before)
                if result.app_failure:  # activate/health failed: current went back to previous (records show why)
                    self._record_state(target, result.previous, result.release, SwitchAction.ROLLBACK, facts.arch)
                else:
                    self._record_state(target, result.release, result.previous, self.action, facts.arch,
                                       result.current_variant)
        deployed = DeployResult(
            device=target.device, arch=facts.arch, release=result.release, current_variant=result.current_variant,
            previous=result.previous, modes=tuple(target.modes), files=result.files, runtime=runtime.packages,
            reused=result.reused, options=target.runtime.to_xcom(), bench_modes=tuple(target.bench_modes),
            connection=target.connection, app_failure=result.app_failure,
        )
        self.log.info("%s", deployed.summary())
        return deployed.to_xcom()


class DeviceSwitchOperator(_DeviceOperator):
    """Switch a device's ``current`` to a release it keeps (verified, health-checked, switched back if
    unhealthy), or remove ``current`` when the target is no release; -> SwitchResult."""

    template_fields: Sequence[str] = ("target", "rollout_id", "config")

    def __init__(self, *, target: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target

    def execute(self, context: Any) -> dict[str, Any]:
        from edgeops_airflow.device_release import DeviceReleases
        from tasks.fleet.records import DeviceTask, SwitchResult, split_release

        target = self._decoded(DeviceTask.from_xcom, self.target, "device task")
        cfg = self._pipeline_config()
        self._transport = DeviceTransport(target.device, target.connection)
        with self._connected() as transport:
            releases = DeviceReleases(transport, cfg.deploy)
            if target.release:
                from edgeops_airflow.signing import release_trust

                result = self._fatal(releases.rollback, target.release, target.runtime, self._fatal(release_trust),
                                     target.app)
            else:
                result = releases.remove_current()
            self._record_state(target, result.release, result.previous, SwitchAction.ROLLBACK)
        switched = SwitchResult(device=target.device, release=result.release, previous=result.previous,
                                variant=split_release(result.release)[1], runtime=target.runtime.to_xcom(),
                                app_failure=result.app_failure)
        self.log.info("%s", switched.summary())
        return switched.to_xcom()


class DeviceBenchmarkOperator(_DeviceOperator):
    """Run the release's bench.py on the device over every deployed variant; store the JSON; -> BenchmarkResult.

    ``deploy`` is DeviceDeployOperator's ``DeployResult`` XCom (it names the device, release and options).
    """

    template_fields: Sequence[str] = ("rollout_id", "deploy", "config")

    def __init__(self, *, deploy: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deploy = deploy

    def _subject(self) -> Any:
        return self.deploy

    def execute(self, context: Any) -> dict[str, Any]:
        from edgeops_airflow.device_release import DeviceReleases
        from tasks.core.results import BenchmarkResult, DeployResult, ModelBench
        from tasks.device.runtime import RuntimeOptions

        deployed = DeployResult.from_xcom(self.deploy)
        cfg = self._pipeline_config()
        options = self._decoded(RuntimeOptions.from_xcom, deployed.options, "runtime options") if deployed.options \
            else None  # a DeployResult without options: XNNPACK with the config's bench.threads
        self._transport = DeviceTransport(deployed.device, deployed.connection)
        label = label_for(self._transport.kind)
        with self._connected() as transport:
            modes = list(deployed.bench_modes or deployed.modes)
            run = self._fatal(DeviceReleases(transport, cfg.deploy).benchmark, deployed.release, modes, cfg.bench,
                              label, options)
        record = {**run.document, "name": deployed.device, "release": deployed.release,
                  "current_variant": deployed.current_variant, "files": [f.to_xcom() for f in deployed.files]}
        store = self._store()
        written = store.put_json(keys.rollout_device(self.rollout_id, deployed.device), record)
        result = BenchmarkResult(
            device=deployed.device, arch=run.arch, release=deployed.release,
            current_variant=deployed.current_variant, label=run.label, record=store.ref(written),
            models={mode: ModelBench.from_bench(r) for mode, r in run.results.items()}, facts=run.facts,
        )
        self.log.info("%s", result.summary())
        return result.to_xcom()
