"""A model that cannot learn (shuffled labels) fails the train step with exit 2 and writes no model."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tasks.core import keys
from tasks.core.names import EXIT_NO_RETRY
from tests.conftest import REPO


@pytest.mark.integration
def test_shuffled_labels_fail_the_train_step_without_retry(stack_env, artifact_store, shuffled_digits):
    s3 = stack_env["s3"]
    env = {**os.environ, "EDGEOPS_S3_ENDPOINT": s3["endpoint"], "AWS_ACCESS_KEY_ID": s3["access_key"],
           "AWS_SECRET_ACCESS_KEY": s3["secret_key"], "EDGEOPS_ARTIFACTS_BUCKET": s3["artifacts_bucket"]}
    run_id = f"test-shuffled-{uuid.uuid4().hex[:8]}"
    proc = subprocess.run([sys.executable, "-m", "tasks.cli", "step", "train", "--run-id", run_id, "--profile", "tiny",
                           "--set", f"data.source={shuffled_digits}"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == EXIT_NO_RETRY, proc.stderr[-2000:]
    assert "TrainingError (not retried): the model did not learn: best val accuracy" in proc.stderr
    assert "check labels / learning rate / epochs" in proc.stderr
    assert not artifact_store.exists(keys.model(run_id))
    assert artifact_store.exists(keys.model(run_id, "history.json"))  # kept: it shows why
