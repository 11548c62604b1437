"""The activate/health commands a group's AppHooks become (tasks.device.app); run for real by
tests/integration/test_device_serve.py on the sshd stand-in."""

from __future__ import annotations

import subprocess

from tasks.device.app import AppHooks, activate_cmd, health_cmd, serve_args, start_cmd


def test_default_hooks_signal_or_start_the_service_and_poll_healthz() -> None:
    hooks = AppHooks()
    assert serve_args(["--threads", "2"], hooks) == "EDGEOPS_SERVE_ARGS=--threads 2 --http-port 8470\n"
    act = activate_cmd("/r", hooks, "r2", "r1")
    assert "kill -HUP" in act and "setsid nohup /r/serve/runtime/bin/python /r/serve/serve.py --root /r" in act
    assert ">> /r/serve-data/serve.log" in act
    assert "systemctl start edgeops-serve;" in start_cmd("/r", AppHooks(start="systemctl start edgeops-serve"))
    health = health_cmd("/r", hooks, "/venv/bin/python", "r2", "r1")
    assert health.startswith("/venv/bin/python -c ") and health.endswith(" /r/serve-data r2 20")


def test_user_commands_run_in_the_root_with_the_releases_named(tmp_path) -> None:
    hooks = AppHooks(activate='echo "$EDGEOPS_RELEASE<-$EDGEOPS_PREVIOUS in $PWD"', health="false")
    out = subprocess.run(["sh", "-c", activate_cmd(str(tmp_path), hooks, "r2", None)], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"r2<- in {tmp_path}"
    assert subprocess.run(["sh", "-c", health_cmd(str(tmp_path), hooks, "py", "r2", "r1")]).returncode == 1


def test_default_health_without_a_service_fails_naming_why(tmp_path) -> None:
    import sys

    cmd = health_cmd(str(tmp_path), AppHooks(health_timeout_s=0.5), sys.executable, "r2", "r1")
    done = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout.strip() == "edgeops-serve is not running (no endpoint.json) after 0.5 s"
