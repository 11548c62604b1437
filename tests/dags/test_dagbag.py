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


# Not in the Airflow image (docker/airflow.Dockerfile, target airflow: Airflow + providers only), so the
# dag-processor and api-server cannot import them: a module-level import of one is an import error in compose.
NOT_IN_AIRFLOW_IMAGE = ("numpy", "tensorflow", "tf_keras", "keras", "tensorflow_model_optimization",
                        "tensorflow_datasets", "ai_edge_litert", "scipy", "sklearn", "matplotlib", "PIL")
# In the image but slow to import: parse time must not pay for them.
HEAVY = ("boto3", "paramiko")

PROBE = """
import runpy, sys
BLOCKED = set(sys.argv[2].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not in the Airflow image: import it inside the function that needs it")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[3])
runpy.run_path(sys.argv[1]) if sys.argv[1].endswith(".py") else __import__(sys.argv[1])
print("HEAVY=" + ",".join(m for m in sys.argv[4].split(",") if m in sys.modules))
"""
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


@pytest.mark.parametrize("target", [*DAG_FILES, "edgeops_ui"], ids=lambda p: getattr(p, "name", p))
def test_parse_imports_nothing_the_airflow_image_lacks_nor_anything_heavy(target):
    argv = [sys.executable, "-c", PROBE, str(target), ",".join(NOT_IN_AIRFLOW_IMAGE), str(PLUGINS), ",".join(HEAVY)]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 0, f"importing {target} needs a module the Airflow image lacks:\n{out.stderr[-3000:]}"
    heavy = [line for line in out.stdout.splitlines() if line.startswith("HEAVY=")]
    assert heavy == ["HEAVY="], f"importing {target} imported {heavy}"
