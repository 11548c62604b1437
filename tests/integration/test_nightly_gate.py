"""The gate through the whole DAG (dag.test(), real MinIO, sshd devices): a bad model never reaches a device.

* a model that cannot learn (shuffled labels) fails the run before anything is deployed;
* a run the gate does not bless is green, publishes its reasons and skips `announce` (no rollout starts);
* a second run on the same data is judged against the first as its champion.
The devices' ``current`` must be unchanged by the first two.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tasks.core import keys
from tasks.core.keys import safe_run_id
from tests.helpers import export_connections, task_states
from tests.integration.test_nightly_dag import _dag

pytestmark = pytest.mark.integration
DEVICE = "pi1"


def _current(stack_env: dict) -> str:
    root = next(d["deploy_root"] for d in stack_env["devices"] if d["name"] == DEVICE)
    return os.path.realpath(Path(root) / "current")


def _run(stack_env: dict, conf: dict):
    with pytest.MonkeyPatch.context() as mp:
        export_connections(mp, stack_env["connections"])
        return _dag().test(run_conf={"profile": "tiny", **conf})


def test_a_model_that_cannot_learn_fails_before_any_deploy(stack_env, airflow_db, shuffled_digits, artifact_store):
    before = _current(stack_env)
    dag_run = _run(stack_env, {"data_source": shuffled_digits})
    states = task_states(dag_run)
    assert "failed" in str(dag_run.state).lower()
    assert states["train"] == {"failed"} and "success" not in states.get("announce", set())
    assert _current(stack_env) == before
    assert not artifact_store.exists(keys.manifest(safe_run_id(dag_run.run_id)))


def test_an_unblessed_run_skips_deploys_and_publishes_why(stack_env, airflow_db, digits, artifact_store):
    before = _current(stack_env)
    dag_run = _run(stack_env, {"min_accuracy": 1.0})
    states = task_states(dag_run)
    assert "success" in str(dag_run.state).lower(), states
    assert states["gate"] == {"success"} and states["publish"] == {"success"}
    assert states["announce"] == {"skipped"}, states  # no asset event: no rollout starts
    assert _current(stack_env) == before
    manifest = artifact_store.get_json(keys.manifest(safe_run_id(dag_run.run_id)))
    assert manifest["gate"]["blessed"] is False
    assert any("floor" in r or "min_accuracy" in r for r in manifest["gate"]["reasons"]), manifest["gate"]["reasons"]
    page = artifact_store.get_bytes(keys.report(safe_run_id(dag_run.run_id))).decode()
    assert "NOT BLESSED" in page


@pytest.fixture
def own_digits(stack_env, artifact_store) -> str:
    """The digits, correctly labelled, under a prefix of this test's own, so no other run can be its champion."""
    from tasks.core.storage import ArtifactStore
    from tasks.ml.seed_data import digit_pngs

    bucket, prefix = stack_env["s3"]["datasets_bucket"], f"test-champion-digits-{uuid.uuid4().hex[:8]}"
    target = ArtifactStore(artifact_store.client, bucket)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kb: target.put_bytes(f"{prefix}/{kb[0]}", kb[1], content_type="image/png"),
                      digit_pngs()))
    return f"s3://{bucket}/{prefix}"


def test_a_second_run_is_judged_against_the_first_as_champion(stack_env, airflow_db, own_digits, artifact_store):
    """A shipping profile (demo, shrunk to the tiny CNN): a test profile's run is never anyone's champion."""
    conf = {"profile": "demo", "data_source": own_digits, "compare_champion": True, "backbone": "tiny", "alpha": 1.0,
            "image_size": 16, "epochs": 6, "modes": ["fp32"], "int8_rescue": False, "min_accuracy": 0.0}
    first = _run(stack_env, conf)
    first_manifest = artifact_store.get_json(keys.manifest(safe_run_id(first.run_id)))
    assert first_manifest["gate"]["blessed"] and first_manifest["gate"]["champion"] is None
    second = _run(stack_env, conf)
    gate = artifact_store.get_json(keys.manifest(safe_run_id(second.run_id)))["gate"]
    assert gate["champion"]["run_id"] == safe_run_id(first.run_id)
    assert 0.0 <= gate["champion"]["p_value"] <= 1.0 and gate["champion"]["finding"] in ("pass", "inconclusive", "fail")
    assert gate["champion"]["drop_upper_pp"] is not None and gate["champion"]["margin_pp"] == 1.0
    assert any("champion" in r for r in gate["reasons"]), gate["reasons"]


def test_a_test_profile_run_is_never_a_champion(stack_env, airflow_db, own_digits, artifact_store):
    first = _run(stack_env, {"data_source": own_digits})  # tiny: blessed, but it may not ship
    gate = artifact_store.get_json(keys.manifest(safe_run_id(first.run_id)))["gate"]
    assert gate["blessed"] and task_states(first)["announce"] == {"skipped"}
    second = _run(stack_env, {"data_source": own_digits, "compare_champion": True})
    assert artifact_store.get_json(keys.manifest(safe_run_id(second.run_id)))["gate"]["champion"] is None
