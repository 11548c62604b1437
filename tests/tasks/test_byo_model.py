"""Bring your own model (model.source): training is skipped, the model is checked against the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from tasks.core.config import load_config
from tasks.core.exceptions import ConfigError
from tasks.core.names import EXIT_NO_RETRY
from tests.conftest import REPO


def _step(stack_env, run_id: str, *sets: str) -> subprocess.CompletedProcess:
    s3 = stack_env["s3"]
    env = {**os.environ, "EDGEOPS_S3_ENDPOINT": s3["endpoint"], "AWS_ACCESS_KEY_ID": s3["access_key"],
           "AWS_SECRET_ACCESS_KEY": s3["secret_key"], "EDGEOPS_ARTIFACTS_BUCKET": s3["artifacts_bucket"]}
    args = [a for s in sets for a in ("--set", s)]
    return subprocess.run([sys.executable, "-m", "tasks.cli", "step", "train", "--run-id", run_id, "--profile", "tiny",
                           *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.integration
def test_imported_model_skips_training_and_a_mismatch_is_refused(stack_env, digits):
    tag = uuid.uuid4().hex[:8]
    first = _step(stack_env, f"test-byo-{tag}-trained", f"data.source={digits}")
    assert first.returncode == 0, first.stderr[-2000:]
    trained = json.loads(first.stdout.strip().splitlines()[-1])
    source = trained["model"]["uri"]

    imported = _step(stack_env, f"test-byo-{tag}-imported", f"data.source={digits}", f"model.source={source}")
    assert imported.returncode == 0, imported.stderr[-2000:]
    result = json.loads(imported.stdout.strip().splitlines()[-1])
    assert result["epochs_run"] == 0 and "imported model" in imported.stderr
    assert result["keras_test_accuracy"] == pytest.approx(trained["keras_test_accuracy"])

    wrong = _step(stack_env, f"test-byo-{tag}-wrong", f"data.source={digits}", f"model.source={source}",
                  "data.image_size=24")
    assert wrong.returncode == EXIT_NO_RETRY and "do not match this config" in wrong.stderr


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"model.source": "s3://m/saved_model"}, "or of a SavedModel directory ending in '/'"),
     ({"model.source": "/tmp/m.keras"}, "s3:// URI of a .keras or .h5"),
     ({"model.source": "s3://m/saved_model/", "quantize.modes": ["fp32", "pruned"], "quantize.int8_rescue": False},
      r"pruned/qat_int8 fine-tune Keras layers; a SavedModel source has no Keras layers to prune"),
     ({"model.source": "s3://m/saved_model/"}, r"\['pruned', 'qat_int8'\] and quantize.int8_rescue: pruned/qat_int8"),
     ({"model.source": "s3://m/a.keras", "model.weights": "s3://m/b.keras"}, "cannot be an s3:// URI"),
     ({"model.source": "s3://m/a.keras", "quantize.modes": ["fp32", "pruned"], "quantize.int8_rescue": False},
      "rebuild the configured")],
)
def test_model_source_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("demo", overrides)
