"""The device knobs of the config: bounded at config time, so nothing fails late on a Pi."""

from __future__ import annotations

import pytest

from tasks.core.config import DeployConfig, load_config
from tasks.core.exceptions import ConfigError
from tasks.device.runtime import RUNTIME_PACKAGES, runtime_key


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"bench.runs": 10**12}, "bench.runs=1000000000000: must be >= 100"), ({"bench.warmup": -5}, "bench.warmup=-5"),
     ({"bench.timeout_s": 5}, "bench.timeout_s"), ({"deploy.keep_releases": 1}, "keep_releases=1: must be 2"),
     ({"deploy.lock_timeout_s": 0}, "lock_timeout_s=0"), ({"deploy.provision_timeout_s": 1500}, "add up to"),
     ({"deploy.keep_releases": "5"}, "expected int")],
)
def test_bad_device_values_fail_at_config_time(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("tiny", overrides)


def test_defaults_fit_inside_the_deploy_task():
    cfg = load_config("demo")
    assert cfg.deploy == DeployConfig() and cfg.deploy.worst_case_s() < DeployConfig.TASK_TIMEOUT_S
    assert "deploy" in cfg.to_dict() and cfg.to_dict()["deploy"]["keep_releases"] == 5


def test_runtime_is_pinned():
    for spec in RUNTIME_PACKAGES:
        assert "==" in spec, spec
    assert "ai-edge-litert==2.3.0" in RUNTIME_PACKAGES
    assert len(runtime_key()) == 12  # no fallback set any more: tests/tasks/device/test_runtime_lock.py
