"""The step image built by ``scripts/images.sh tasks``: tagged by the current source hash, labelled, runs
the CLI and the ML stack, and contains no Airflow. Talks to the engine through the docker CLI only.

With the vfs storage driver every ``docker run`` copies the whole image first, so the in-container checks
share one probe container where they can.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tasks.core.config import load_config
from tasks.core.version import image_tag, source_hash

pytestmark = pytest.mark.containers

BUILD_HINT = "run: scripts/images.sh all"

# One container, many facts; each fact is caught on its own so one failure does not hide the others.
PROBE = r"""
import importlib.metadata as md, importlib.util, json, os, pathlib, sys
out = {"uid": os.getuid(), "cwd": os.getcwd(), "executable": sys.executable}
out["airflow_module"] = importlib.util.find_spec("airflow") is not None
out["airflow_dists"] = sorted(d.metadata["Name"] for d in md.distributions()
                              if (d.metadata["Name"] or "").lower().startswith("apache-airflow"))
try:
    pathlib.Path("write-probe").write_text("ok")
    out["cwd_writable"] = True
except OSError as exc:
    out["cwd_writable"] = repr(exc)
try:
    import ai_edge_litert, tensorflow
    from ai_edge_litert.interpreter import Interpreter
    out["tensorflow"] = tensorflow.__version__
    out["litert"] = md.version("ai-edge-litert")
    out["interpreter"] = Interpreter.__name__
except Exception as exc:
    out["ml_import_error"] = repr(exc)
print(json.dumps(out))
"""


def _docker() -> str:
    # Debian's docker.io CLI first, as scripts/images.sh does; any CLI can run and inspect.
    return os.environ.get("DOCKER") or ("/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker")


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_docker(), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which(_docker()) is None:
        pytest.fail(f"no docker CLI ({_docker()}); run scripts/engine.sh, then {BUILD_HINT}")
    info = _run("info", "--format", "{{.ServerVersion}}", timeout=60)
    if info.returncode != 0:
        pytest.fail(f"container engine unreachable ({info.stderr.strip()}); run scripts/engine.sh, then {BUILD_HINT}")
    tag = image_tag()
    if _run("image", "inspect", tag, timeout=60).returncode != 0:
        pytest.fail(f"image {tag} (the current tasks.core.version.image_tag()) is missing; {BUILD_HINT}")
    return tag


@pytest.fixture(scope="module")
def config(image: str) -> dict:
    out = _run("image", "inspect", "--format", "{{json .Config}}", image, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def probe(image: str) -> dict:
    out = _run("run", "--rm", "--network", "host", "--entrypoint", "python", image, "-c", PROBE)
    assert out.returncode == 0, f"probe container failed ({out.returncode}):\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_image_is_labelled_with_its_source_hash(config):
    labels = config["Labels"] or {}
    assert labels.get("org.edgeops.source-hash") == source_hash()
    assert labels.get("org.edgeops.code-version") not in (None, "", "unknown")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env.get("EDGEOPS_CODE_VERSION") == labels["org.edgeops.code-version"]
    assert env.get("TF_CPP_MIN_LOG_LEVEL") == "2" and env.get("PYTHONUNBUFFERED") == "1"
    assert config["Entrypoint"] == ["edgeops"]
    assert config["User"] == "edgeops"


def test_image_has_no_airflow(probe):
    assert probe["airflow_module"] is False
    assert probe["airflow_dists"] == []


def test_runs_unprivileged_in_a_writable_home_from_the_venv(probe):
    assert probe["uid"] != 0
    assert probe["cwd_writable"] is True, probe["cwd_writable"]
    assert probe["executable"].startswith("/opt/edgeops/venv/")


def test_tensorflow_and_litert_import(probe):
    assert "ml_import_error" not in probe, probe.get("ml_import_error")
    assert probe["tensorflow"] == "2.21.0"
    assert probe["litert"] == "2.3.0"


def test_edgeops_config_runs_through_the_entrypoint(image):
    out = _run("run", "--rm", "--network", "host", image, "config", "--profile", "tiny")
    assert out.returncode == 0, f"edgeops config failed ({out.returncode}):\n{out.stderr[-3000:]}"
    resolved = json.loads(out.stdout)
    assert resolved == json.loads(json.dumps(load_config("tiny", {}).to_dict()))
