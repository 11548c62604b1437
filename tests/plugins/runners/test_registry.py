"""The runner registry, the config's runner names and the stack's names agree (one home each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core import names
from tasks.core.config import RUNNERS

REPO = Path(__file__).resolve().parents[3]


def test_registry_names_are_the_config_runners_and_resolve_to_classes():
    import importlib

    from edgeops_airflow.runners import REGISTRY

    assert tuple(REGISTRY) == RUNNERS
    for target in REGISTRY.values():
        module, _, cls = target.partition(":")
        runner = getattr(importlib.import_module(module), cls)
        assert callable(runner.run) and callable(runner.kill)


@pytest.mark.parametrize("stack_file", ["stack.json", "stack.test.json"])
def test_dev_stacks_use_the_names_of_tasks_names(stack_file):
    stack = json.loads((REPO / "config" / stack_file).read_text())
    assert stack["minio"]["artifacts_bucket"] == names.ARTIFACTS_BUCKET
    assert stack["minio"]["datasets_bucket"] == names.DATASETS_BUCKET
    assert stack["airflow"]["minio_conn_id"] == names.MINIO_CONN_ID


def test_the_tests_stack_shares_no_port_with_the_users():
    user, test = (json.loads((REPO / "config" / f).read_text()) for f in ("stack.json", "stack.test.json"))

    def ports(s: dict) -> set[int]:
        services = {s["minio"]["port"], s["minio"]["console_port"], s["airflow"]["port"]}
        return services | {d["port"] for d in s["devices"]}

    assert not ports(user) & ports(test) and test["name"] and not user.get("name")
