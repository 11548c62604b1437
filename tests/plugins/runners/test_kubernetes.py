"""The kubernetes runner renders a real pod spec (no cluster here, so the spec is what we can check)."""

from __future__ import annotations

import json

import pytest

from tasks.core.config import load_config
from tasks.core.version import image_tag


@pytest.fixture
def pod():
    from edgeops_airflow.runners.kubernetes_runner import XCOM_FILE, pod_operator
    from edgeops_airflow.step_operator import StepOperator

    config = load_config("tiny", {"execution.runner": "kubernetes", "execution.memory_limit": "6g"}).to_dict()
    op = StepOperator(task_id="train", step="train", run_id="r1", config=config, inputs={"a": 1})
    env = {"EDGEOPS_S3_ENDPOINT": "http://minio:9000", "EDGEOPS_ARTIFACTS_BUCKET": "artifacts",
           "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "EDGEOPS_CODE_VERSION": "abc"}
    return pod_operator(op.request(env)).build_pod_request_obj(dry_run=True), XCOM_FILE


def test_pod_runs_the_step_cli_on_the_step_image(pod):
    spec, xcom_file = pod
    container = spec.spec.containers[0]
    assert container.image == image_tag()
    assert container.command == ["edgeops"]
    args = container.args
    assert args[:4] == ["step", "train", "--run-id", "r1"] and args[-2:] == ["--result-file", xcom_file]
    assert json.loads(args[args.index("--config-json") + 1])["execution"]["runner"] == "kubernetes"


def test_credentials_come_from_a_secret_never_the_spec(pod):
    spec, _ = pod
    container = spec.spec.containers[0]
    env = {e.name: e.value for e in container.env}
    assert env["EDGEOPS_S3_ENDPOINT"] == "http://minio:9000" and "AWS_SECRET_ACCESS_KEY" not in env
    assert "secret" not in json.dumps([e.value for e in container.env])
    assert container.env_from[0].secret_ref.name == "edgeops-minio"


def test_resources_and_namespace(pod):
    spec, _ = pod
    resources = spec.spec.containers[0].resources
    assert resources.limits["memory"] == "6Gi" and resources.requests["cpu"] == "2.0"
    assert spec.metadata.namespace == "edgeops"
