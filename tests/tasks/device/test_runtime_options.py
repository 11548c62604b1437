"""RuntimeOptions: a fleet group's threads and delegate, and the one mapping to bench.py's arguments."""

from __future__ import annotations

import pytest

from tasks.core.exceptions import ConfigError
from tasks.device.runtime import RuntimeOptions
from tasks.fleet.inventory import Budgets, Group, load_inventory

BUDGETS = Budgets(p95_latency_ms=50, peak_rss_mb=300, accuracy_tolerance=0.02)


def test_builtin_delegate_maps_to_threads_only() -> None:
    assert RuntimeOptions(threads=4).bench_args() == ["--threads", "4"]  # bench.py's default delegate: xnnpack


def test_external_delegate_maps_to_path_and_sorted_options() -> None:
    runtime = RuntimeOptions(2, "/usr/lib/libedgetpu.so.1", {"device": "usb:0", "b": "x y=z"})
    assert runtime.bench_args() == ["--threads", "2", "--delegate", "/usr/lib/libedgetpu.so.1",
                                    "--delegate-option", "b=x y=z", "--delegate-option", "device=usb:0"]
    assert runtime.external and not RuntimeOptions(1).external


def test_from_group_takes_the_groups_runtime_options() -> None:
    group = Group("coral", BUDGETS, threads=3, delegate="/usr/lib/libarmnnDelegate.so",
                  delegate_options={"backends": "CpuAcc"})
    assert group.runtime == RuntimeOptions(3, "/usr/lib/libarmnnDelegate.so", {"backends": "CpuAcc"})
    for g in load_inventory().groups:  # every group of the shipped fleet file maps
        assert g.runtime.threads == g.threads


def test_dict_round_trip_and_defaults() -> None:
    runtime = RuntimeOptions(2, "/opt/libd.so", {"k": "v"})
    assert RuntimeOptions.from_xcom(runtime.to_xcom()) == runtime
    assert RuntimeOptions.from_xcom({"threads": 1}) == RuntimeOptions(1)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"threads": 0}, "threads=0"),
    ({"threads": True}, "threads=True"),
    ({"threads": 65}, "threads=65"),
    ({"threads": 1, "delegate": "libedgetpu.so.1"}, "absolute path"),
    ({"threads": 1, "delegate": "/usr/lib/libx.so\n--runs"}, "absolute path"),
    ({"threads": 1, "delegate_options": {"a": "b"}}, "only apply to an external"),
    ({"threads": 1, "delegate": "/l/libd.so", "delegate_options": {"a=b": "c"}}, "keys without '='"),
    ({"threads": 1, "delegate": "/l/libd.so", "delegate_options": {"a": 1}}, "printable strings"),
])
def test_invalid_options_are_one_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RuntimeOptions(**kwargs)


def test_unknown_or_missing_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['budgets'\]"):
        RuntimeOptions.from_xcom({"threads": 1, "budgets": {}})
    with pytest.raises(ConfigError, match="no 'threads'"):
        RuntimeOptions.from_xcom({"delegate": "xnnpack"})
