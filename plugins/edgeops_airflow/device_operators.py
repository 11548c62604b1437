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
from tasks import keys


def _key_or_uri(store: Any, ref: str, dest: Path) -> Path:
    """Gate/evaluate XComs carry either full s3:// URIs or keys in the artifacts bucket."""
    return store.fetch_uri(ref, dest) if ref.startswith("s3://") else store.get_file(ref, dest)


def _fail(message: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)  # bad input: retrying cannot help


class _DeviceOperator(BaseOperator):
    ui_color = "#fdf1e0"

    def __init__(self, *, artifacts_conn_id: str, bucket: str, **kwargs: Any) -> None:
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
    """Provision the device runtime, upload the gate's variants + sample + bench.py, switch ``current``.

    ``gate`` is the gate task's XCom: ``{"deploy": [modes], "current": mode, "tflite": {mode: uri_or_key},
    "sample_key": ...}``; ``sample_key`` given here wins over the gate's. Returns a small dict for XCom.
    """

    template_fields: Sequence[str] = ("device", "run_id", "gate", "sample_key")

    def __init__(
        self, *, device: str, run_id: str, gate: Any, sample_key: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.device, self.run_id, self.gate, self.sample_key = device, run_id, gate, sample_key

    def execute(self, context: Any) -> dict[str, Any]:
        gate = dict(self.gate or {})
        modes, current, tflite = (
            list(gate.get("deploy") or []),
            gate.get("current"),
            dict(gate.get("tflite") or {}),
        )
        sample = self.sample_key or gate.get("sample_key")
        if not modes:
            _fail(f"gate blessed no variant for run {self.run_id}: nothing to deploy to {self.device}")
        if current not in modes or any(m not in tflite for m in modes) or not sample:
            _fail(
                f"gate XCom is inconsistent: current={current!r}, deploy={modes}, tflite has "
                f"{sorted(tflite)}, sample_key={sample!r}; need current in deploy, a tflite URI per mode "
                "and a sample key"
            )
        store = self._store()
        with tempfile.TemporaryDirectory(prefix=f"edgeops-deploy-{self.device}-") as tmp:
            files: dict[str, str | Path] = {}
            for mode in modes:
                files[f"{mode}.tflite"] = _key_or_uri(store, tflite[mode], Path(tmp) / f"{mode}.tflite")
            files["sample.npz"] = _key_or_uri(store, sample, Path(tmp) / "sample.npz")
            files["bench.py"] = Path(tmp) / "bench.py"  # the standalone script shipped with every release
            files["bench.py"].write_bytes(resources.files("tasks.device").joinpath("bench.py").read_bytes())
            self._client = DeviceClient(self.device)
            with self._client as dev:
                facts = dev.facts()
                self.log.info("%s: %s", self.device, facts)
                runtime = dev.provision()
                result = dev.deploy(self.run_id, files, current)
        return {
            "device": self.device,
            "arch": facts["arch"],
            "release": result["release"],
            "current_variant": result["current_variant"],
            "previous": result["previous"],
            "files": result["files"],
            "runtime": runtime["packages"],
        }


class DeviceBenchmarkOperator(_DeviceOperator):
    """Run the release's bench.py on the device over every deployed mode; store the JSON, return a summary.

    ``deploy`` is DeviceDeployOperator's XCom (it also names the device when ``device`` is not given);
    ``bench`` is the ``bench`` config section (or the whole resolved config holding one).
    """

    template_fields: Sequence[str] = ("device", "run_id", "deploy", "bench")

    def __init__(
        self, *, run_id: str, deploy: Any, bench: Any = None, device: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.device, self.run_id, self.deploy, self.bench = device, run_id, deploy, bench

    def execute(self, context: Any) -> dict[str, Any]:
        deploy = dict(self.deploy or {})
        device = self.device or deploy.get("device")
        bench = dict(self.bench or {})
        bench = dict(bench["bench"]) if isinstance(bench.get("bench"), dict) else bench
        modes = [
            f["name"].removesuffix(".tflite")
            for f in deploy.get("files", [])
            if f["name"].endswith(".tflite")
        ]
        current = deploy.get("current_variant")
        if not device or not modes or current not in modes or deploy.get("release") != self.run_id:
            _fail(
                f"deploy XCom {deploy!r} does not describe release {self.run_id} on a device "
                "(need device, release, current_variant and .tflite files)"
            )
        self._client = DeviceClient(device)
        label = label_for(self._client.kind)
        with self._client as dev:
            doc = dev.benchmark(self.run_id, modes, bench, label)
        key = keys.device(self.run_id, device)
        record = {
            **doc,
            "name": device,
            "release": self.run_id,
            "current_variant": current,
            "files": deploy.get("files", []),
        }
        self._store().put_json(key, record)
        self.log.info("benchmark of %s on %s stored at s3://%s/%s", self.run_id, device, self.bucket, key)
        cur = doc["results"][current]
        return {
            "device": device,
            "arch": doc["device"]["arch"],
            "release": self.run_id,
            "current_variant": current,
            "key": key,
            "benchmark": {
                "latency_ms": {k: cur["latency_ms"][k] for k in ("p50", "p90", "p99")},
                "accuracy": cur["accuracy"],
                "load_ms": cur["load_ms"],
                "peak_rss_mb": cur["peak_rss_mb"],
                "label": doc["label"],
            },
        }
