"""Test-wide settings. Airflow reads its config at import time, so this runs before any test imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The tests' own dev stack (scripts/run_tests.sh starts it): its MinIO data, device roots and Airflow DB are not
# the ones `make demo` uses (.devstack/, config/stack.json), so tests never change the user's fleet, champions or
# runs list. Set before anything imports scripts.devstack, which reads them once.
os.environ.setdefault("EDGEOPS_DEVSTACK_DIR", str(REPO / ".devstack-test"))
os.environ.setdefault("EDGEOPS_STACK_FILE", str(REPO / "config" / "stack.test.json"))
STATE_DIR = Path(os.environ["EDGEOPS_DEVSTACK_DIR"])
STACK_FILE = Path(os.environ["EDGEOPS_STACK_FILE"])
ENV_FILE = STATE_DIR / "env.json"

os.environ.setdefault("AIRFLOW_HOME", str(STATE_DIR / "test-airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# dag.test() of a DAG with a DeadlineAlert fails when the run ends (Airflow 3.3: its in-process DagRun.update_state
# reads dag.deadline as alert ids, which only a DAG serialized by the dag-processor has): tests run the nightly
# without its deadline; tests/dags/test_unattended.py checks the deadline itself.
os.environ.setdefault("EDGEOPS_NIGHTLY_DEADLINE_HOURS", "0")


def _signing_connection() -> None:
    """Tests sign releases with their own key (the release signer's connection, as Airflow reads env
    connections); a test that needs another key sets it itself."""
    from tasks.device.signing import Trust, connection_doc, generate

    os.environ.setdefault("AIRFLOW_CONN_EDGEOPS_SIGNING", json.dumps(connection_doc(Trust(generate()[0]))))


_signing_connection()


@pytest.fixture(scope="session")
def stack_env() -> dict:
    """The running dev stack (real MinIO + sshd devices), as written by scripts/devstack."""
    if not ENV_FILE.exists():
        pytest.fail(f"{ENV_FILE} missing; start the stack first: .venv/bin/python -m scripts.devstack up --no-airflow")
    return json.loads(ENV_FILE.read_text())


@pytest.fixture(scope="session")
def artifact_store(stack_env):
    from tasks.core.storage import ArtifactStore, make_client

    s3 = stack_env["s3"]
    return ArtifactStore(make_client(s3["endpoint"], s3["access_key"], s3["secret_key"]), s3["artifacts_bucket"])


@pytest.fixture(scope="session")
def admin_s3(stack_env):
    """MinIO's root user: for test set-up and clean-up the pipeline's service account may not do."""
    from tasks.core.storage import make_client

    admin = stack_env["s3_admin"]
    return make_client(stack_env["s3"]["endpoint"], admin["access_key"], admin["secret_key"])


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB under AIRFLOW_HOME (set in tests/conftest.py), reused across sessions."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=600)
    return home


@pytest.fixture(scope="session")
def digits(stack_env, artifact_store) -> str:
    from tasks.ml.seed_data import seed_digits

    uri = f"s3://{stack_env['s3']['datasets_bucket']}/digits"
    seed_digits(artifact_store, uri)
    return uri


@pytest.fixture(scope="session")
def shuffled_digits(stack_env, artifact_store) -> str:
    """600 digits with labels drawn at random (seeded), under one fixed prefix, uploaded once (idempotent;
    the datasets bucket refuses deletes, so nothing is removed afterwards)."""
    import numpy as np

    from tasks.core.storage import ArtifactStore
    from tasks.ml.seed_data import digit_pngs

    bucket = stack_env["s3"]["datasets_bucket"]
    prefix = "test-shuffled-digits"
    target = ArtifactStore(artifact_store.client, bucket)
    labels = np.random.RandomState(0).randint(0, 10, size=600)
    objects = [(f"{prefix}/{label}/{rel.split('/')[1]}", blob)
               for (rel, blob), label in zip(digit_pngs()[:600], labels, strict=True)]
    existing = {o["Key"] for o in target.list(prefix + "/")}
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kb: target.put_bytes(kb[0], kb[1], content_type="image/png"),
                      [kb for kb in objects if kb[0] not in existing]))
    return f"s3://{bucket}/{prefix}"
