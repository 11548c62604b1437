"""Every DAG file imports cleanly, fast, and without heavy ML/IO libraries at parse time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DAG_FILES = sorted((Path(__file__).resolve().parents[2] / "dags").glob("*.py"))


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_errors(dag_file):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_file))
    assert bag.import_errors == {}
    assert bag.dags, f"{dag_file.name} defines no DAG"
    for dag in bag.dags.values():
        assert dag.catchup is False
        assert dag.doc_md
        for t in dag.tasks:
            assert t.retries is not None and t.execution_timeout is not None, t.task_id


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_does_not_import_heavy_modules(dag_file):
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('tensorflow', 'keras', 'boto3', 'paramiko', 'ai_edge_litert') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(dag_file)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"parsing {dag_file.name} imported {out.stdout.strip()}"
