"""The runner registry, the config's runner names and the stack's names agree (one home each)."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_dev_stack_uses_the_names_of_tasks_names():
    stack = json.loads((REPO / "config" / "stack.json").read_text())
    assert stack["minio"]["artifacts_bucket"] == names.ARTIFACTS_BUCKET
    assert stack["minio"]["datasets_bucket"] == names.DATASETS_BUCKET
    assert stack["airflow"]["minio_conn_id"] == names.MINIO_CONN_ID
