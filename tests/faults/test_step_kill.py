"""A task process SIGKILLed mid-train (OOM killer, a lost worker): no orphan step keeps writing, the retry
succeeds, and the run's model key has exactly one writer after it. Real processes, real MinIO, real TF."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tasks.core import keys

REPO = Path(__file__).resolve().parents[2]
REPETITIONS = 10
# The Airflow task process, reduced to what matters here: the local runner running one real step.
TASK_PROCESS = """
import json, logging, sys
from edgeops_airflow.runners.common import StepRequest
from edgeops_airflow.runners.local_runner import LocalRunner
from tasks.core.config import load_config
run_id, env = sys.argv[1], json.loads(sys.argv[2])
config = load_config("tiny")
argv = ("step", "train", "--run-id", run_id, "--config-json", config.to_json(), "--inputs", "{}")
request = StepRequest("train", "train", run_id, config, argv, env, logging.getLogger("task"))
print(json.dumps(LocalRunner(request).run({})), flush=True)
"""


def _step_env(stack_env: dict) -> dict[str, str]:
    s3 = stack_env["s3"]
    return {"EDGEOPS_S3_ENDPOINT": s3["endpoint"], "AWS_ACCESS_KEY_ID": s3["access_key"],
            "AWS_SECRET_ACCESS_KEY": s3["secret_key"], "EDGEOPS_ARTIFACTS_BUCKET": s3["artifacts_bucket"]}


def _task(run_id: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TASK_PROCESS, run_id, json.dumps(env)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'plugins'}"})


def _steps_of(run_id: str) -> list[int]:
    """Pids of live `edgeops step` processes of this run (what an orphan would be)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            alive = (proc / "stat").read_text().split()[2] != "Z"
        except (OSError, IndexError):  # not a process, or it went away while we looked
            continue
        if alive and b"tasks.cli" in cmdline and run_id.encode() in cmdline:
            out.append(int(proc.name))
    return out


def _wait_steps(run_id: str, running: bool, seconds: float) -> bool:
    """Wait until this run has (running=True) or has no (False) live step process."""
    deadline = time.monotonic() + seconds
    while bool(_steps_of(run_id)) != running:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_sigkilled_task_leaves_no_orphan_and_the_retry_is_the_one_writer(stack_env, digits, admin_s3, figures):
    env, rng = _step_env(stack_env), random.Random(7)
    passed, orphans, problems = 0, 0, []
    for rep in range(REPETITIONS):
        run_id = f"fault-kill-{uuid.uuid4().hex[:8]}"
        task = _task(run_id, env)
        assert _wait_steps(run_id, True, 60), "the step process never started"
        time.sleep(rng.uniform(1.0, 8.0))  # somewhere in TF start-up, data loading or fit
        os.kill(task.pid, signal.SIGKILL)
        task.wait()
        if not _wait_steps(run_id, False, 10):
            orphans += 1
            problems.append(f"rep {rep}: orphan step {_steps_of(run_id)}")
            for pid in _steps_of(run_id):
                os.kill(pid, signal.SIGKILL)
            continue
        retry = _task(run_id, env)
        out, _ = retry.communicate(timeout=600)
        if retry.returncode != 0:
            problems.append(f"rep {rep}: retry exited {retry.returncode}")
            continue
        model = json.loads(out.strip().splitlines()[-1])["model"]
        versions = admin_s3.list_object_versions(Bucket=env["EDGEOPS_ARTIFACTS_BUCKET"],
                                                 Prefix=keys.model(run_id)).get("Versions", [])
        latest = next(v for v in versions if v["IsLatest"])
        if latest["VersionId"] != model["version_id"]:
            problems.append(f"rep {rep}: the latest model version is not the retry's (another writer?)")
            continue
        passed += 1
    figures("step SIGKILLed mid-train, then retried", REPETITIONS, passed, data_lost=0,
            note=f"orphans {orphans}")
    assert passed == REPETITIONS and not problems, problems
