"""The local runner: allowlisted environment, no orphans, SIGTERM -> SIGKILL. Real processes, no mocks."""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.core.config import load_config

REPO = Path(__file__).resolve().parents[3]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_step_environment_drops_airflow_secrets():
    from edgeops_airflow.runners.local_runner import step_environment

    worker = {"PATH": "/usr/bin", "HOME": "/root", "AIRFLOW__CORE__FERNET_KEY": "fernet",
              "AIRFLOW__API_AUTH__JWT_SECRET": "jwt", "AWS_PROFILE": "prod", "EDGEOPS_CACHE": "/c"}
    env = step_environment({"AWS_ACCESS_KEY_ID": "k", "EDGEOPS_S3_ENDPOINT": "http://x"}, worker)
    assert env["PATH"] == "/usr/bin" and env["EDGEOPS_CACHE"] == "/c" and env["AWS_ACCESS_KEY_ID"] == "k"
    assert not any(k.startswith("AIRFLOW__") for k in env) and "AWS_PROFILE" not in env
    assert env["PYTHONPATH"] == str(REPO)


def test_a_sigkilled_task_process_leaves_no_orphan_step():
    """The worker's task process dies hard (OOM killer, SIGKILL): its step subprocess must die with it."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "from functools import partial\n"
         "from edgeops_airflow.runners.step_user import child_setup\n"
         "child = subprocess.Popen(['sleep', '120'], preexec_fn=partial(child_setup, None))\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'plugins'}"})
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()
    parent.wait()
    assert _wait_gone(child), f"step process {child} outlived its SIGKILLed parent"


@pytest.mark.parametrize("ignores_term", [False, True])
def test_kill_escalates_to_sigkill(ignores_term):
    from edgeops_airflow.runners.common import StepRequest
    from edgeops_airflow.runners.local_runner import LocalRunner
    from edgeops_airflow.runners.step_user import child_setup

    request = StepRequest("train", "train", "r1", load_config("tiny"), (), {}, logging.getLogger("t"))
    runner = LocalRunner(request, kill_grace_s=1.0)
    trap = "trap '' TERM; " if ignores_term else ""
    runner.proc = subprocess.Popen(["sh", "-c", f"{trap}sleep 120 & wait"],
                                   preexec_fn=functools.partial(child_setup, None))
    time.sleep(0.3)
    start = time.monotonic()
    runner.kill()
    assert runner.proc.poll() is not None and time.monotonic() - start < 5


def test_step_user_gets_its_own_home_tmp_and_cache():
    from edgeops_airflow.runners.local_runner import step_environment
    from edgeops_airflow.runners.step_user import StepIdentity

    who = StepIdentity("edgeops-step", 999, 995, Path("/var/lib/edgeops-step"))
    env = step_environment({"AWS_ACCESS_KEY_ID": "k"}, {"HOME": "/root", "TMPDIR": "/tmp/x", "EDGEOPS_CACHE": "/c"},
                           who)
    assert env["HOME"] == "/var/lib/edgeops-step" and env["TMPDIR"] == "/var/lib/edgeops-step/tmp"
    assert env["EDGEOPS_CACHE"] == "/var/lib/edgeops-step/cache" and env["USER"] == "edgeops-step"


@pytest.mark.parametrize("name", ["no-such-user-h19c", "root"])
def test_a_missing_or_privileged_step_user_is_refused(name):
    from edgeops_airflow.runners.step_user import StepUserError, identity

    if os.geteuid() != 0:
        assert identity({"EDGEOPS_STEP_USER": name}) is None
        return
    with pytest.raises(StepUserError, match="bootstrap.sh" if name != "root" else "neither root"):
        identity({"EDGEOPS_STEP_USER": name})


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root task process switches to the step user")
def test_a_root_task_runs_its_step_as_the_step_user_which_still_dies_with_it():
    """The parent-death signal is set after the uid switch (the kernel clears it on a credential change)."""
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "from edgeops_airflow.runners.local_runner import spawn\n"
         "child = spawn(['sh', '-c', 'id -u; id -G; echo $HOME; exec sleep 120'], {}, stdout=subprocess.PIPE,"
         " text=True)\n"
         "print(child.pid, *[child.stdout.readline().strip() for _ in range(3)], sep='|', flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'plugins'}"})
    pid, uid, groups, home = parent.stdout.readline().strip().split("|")
    import pwd

    step = pwd.getpwnam("edgeops-step")
    assert int(uid) == step.pw_uid and groups.split() == [str(step.pw_gid)] and home == step.pw_dir
    assert _alive(int(pid))
    parent.kill()
    parent.wait()
    assert _wait_gone(int(pid)), f"step process {pid} outlived its SIGKILLed parent"
