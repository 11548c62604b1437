"""The traffic canary through the rollout DAG (dag.test) on the real MinIO and sshd devices: pi1, the canary, serves
real requests (sent on the device itself, over edgeops-serve's Unix socket, as a local application would) while the
rollout deploys, and ``canary.traffic`` judges them before the gate promotes.

* good frames: the traffic canary passes (requests of the new release counted, error rate 0, the confidence compared
  with the previous release's traffic on pi1) and the rollout succeeds;
* half the requests malformed (a wrong X-Shape: 400, counted as bad requests): the error rate is over its threshold,
  the canary is switched back and nothing is promoted; the record and the report say why.
"""

from __future__ import annotations

import base64
import io
import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.core import keys
from tasks.core.keys import safe_run_id
from tasks.core.results import ArtifactRef
from tests.device_load import load_on
from tests.helpers import task_states
from tests.integration.test_rollout_dag import _current, rollout  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def _fleet(tmp: Path, traffic: dict[str, Any] | None) -> Path:
    group: dict[str, Any] = {"threads": 1, "budgets": {"p95_latency_ms": 5000.0, "peak_rss_mb": 4000.0,
                                                         "accuracy_tolerance": 0.5},
                             "app": {"http_port": 0, "health_timeout_s": 30}}
    if traffic:
        group["traffic_canary"] = traffic
    path = tmp / f"fleet-{len(list(tmp.glob('fleet-*')))}.json"
    path.write_text(json.dumps({"groups": {"sim": group}, "devices": [{"name": "pi1", "group": "sim", "wave": 0}]}))
    return path


@pytest.fixture
def frame(blessed_run, artifact_store, tmp_path) -> str:
    """The blessed run's first sample image as a base64 .npy body: a frame the model takes."""
    ref = ArtifactRef.from_xcom(artifact_store.get_json(keys.manifest(blessed_run))["gate"]["sample"])
    with np.load(artifact_store.fetch(ref, tmp_path / "sample.npz"), allow_pickle=False) as data:
        buf = io.BytesIO()
        np.save(buf, data["x"][0], allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


def _load(frame: str, bad_every: int = 0) -> AbstractContextManager[dict[str, Any]]:
    """Requests on pi1 (one frame; every ``bad_every``-th malformed) while the block runs: the first rollout starts
    the service, so the load waits for it, on the device's own python."""
    return load_on("pi1", "--body", f"npy:{frame}", "--bad-every", str(bad_every), "--pause", "0.01", "--wait",
                   wait_running=False, timeout=700, system_python=True)


def _other_variant(artifact_store, run_id: str, stack_env) -> str:
    modes = artifact_store.get_json(keys.manifest(run_id))["gate"]["deploy"]
    now = _current(stack_env, "pi1") or ""
    return next(m for m in modes if not now.endswith(f".{m}"))


def test_real_traffic_passes_the_traffic_canary_and_the_rollout_promotes(blessed_run, rollout, stack_env,  # noqa: F811
                                                                         artifact_store, frame, tmp_path):
    first = _other_variant(artifact_store, blessed_run, stack_env)
    settings = {"min_requests": 30, "max_wait_s": 120, "max_error_rate": 0.05, "max_p95_ms": 2000,
                "max_confidence_drop": 0.5}
    with _load(frame) as load:
        warm = rollout(_fleet(tmp_path, None), run_id=blessed_run, variant=first)  # the previous release's traffic
        assert "success" in str(warm.state).lower(), task_states(warm)
        second = _other_variant(artifact_store, blessed_run, stack_env)
        dag_run = rollout(_fleet(tmp_path, settings), run_id=blessed_run, variant=second)
    states = task_states(dag_run)
    assert "success" in str(dag_run.state).lower(), states
    assert states["canary.traffic"] == {"success"}, states
    record = artifact_store.get_json(keys.rollout_record(safe_run_id(dag_run.run_id)))
    [verdict] = record["traffic"]
    print(f"load: {load}; traffic verdict: {verdict['status']}: {verdict['reasons']}; "
          f"new {verdict['new']['requests']} requests, waited {verdict['waited_s']} s")
    assert record["status"] == "succeeded" and verdict["status"] == "passed", verdict
    assert verdict["release"] == f"{blessed_run}.{second}" == _current(stack_env, "pi1")
    assert verdict["previous"] == f"{blessed_run}.{first}"
    assert verdict["new"]["requests"] >= 30 and verdict["new"]["errors"] == 0, verdict
    assert any("mean confidence" in r for r in verdict["reasons"]), verdict  # compared with the previous release
    assert set(load["statuses"]) == {"200"} and load["releases"].get(f"{blessed_run}.{second}", 0) >= 30, load


def test_malformed_traffic_fails_the_traffic_canary_and_nothing_is_promoted(blessed_run, rollout,  # noqa: F811
                                                                            stack_env, artifact_store, frame,
                                                                            tmp_path):
    before = _current(stack_env, "pi1")
    target = _other_variant(artifact_store, blessed_run, stack_env)
    settings = {"min_requests": 30, "max_wait_s": 120, "max_error_rate": 0.05, "max_p95_ms": 2000,
                "max_confidence_drop": 1.0}
    with _load(frame, bad_every=2) as load:
        dag_run = rollout(_fleet(tmp_path, settings), run_id=blessed_run, variant=target)
    states = task_states(dag_run)
    assert "failed" in str(dag_run.state).lower(), states
    assert states["canary.switch_back"] == {"success"} and states["canary.promote"] <= {"skipped", "None"}, states
    record = artifact_store.get_json(keys.rollout_record(safe_run_id(dag_run.run_id)))
    [verdict] = record["traffic"]
    print(f"load: {load}; traffic verdict: {verdict['status']}: {verdict['reasons']}")
    assert record["status"] == "canary_failed" and verdict["status"] == "failed", record
    assert any("traffic canary failed on pi1" in r and "bad requests" in r for r in record["reasons"]), record
    assert verdict["new"]["bad_requests"] >= 10 and _current(stack_env, "pi1") == before
    # half of this switch's traffic was bad: the release's earlier activation in this module (good frames) is
    # not summed in (it diluted the rate to 6 % before activations were told apart)
    assert verdict["new"]["bad_requests"] / verdict["new"]["requests"] > 0.4, verdict
    assert record["devices"][0]["status"] == "rolled_back"
    html = artifact_store.get_bytes(keys.rollout_report(safe_run_id(dag_run.run_id))).decode()
    assert "Traffic canary" in html and "bad requests" in html
