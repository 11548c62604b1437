"""bench.py's delegates, run as devices run it (a subprocess, real LiteRT): the delegate that ran is recorded,
and a delegate that does not load or apply is exit 4 with an error document, never a silent CPU fallback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import null_delegate_library, tiny_tflite_release

BENCH = Path(__file__).resolve().parents[3] / "tasks" / "device" / "bench.py"
EXIT_DELEGATE = 4


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("delegates")
    release = tiny_tflite_release(tmp, samples=16)
    (tmp / "libfake_text.so").write_text("not a shared library\n")
    shutil.copy("/bin/true", tmp / "libfake_exe.so")  # an ELF executable: dlopen refuses it
    return {**release, "text.so": tmp / "libfake_text.so", "exe.so": tmp / "libfake_exe.so"}


@pytest.fixture(scope="module")
def null_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return null_delegate_library(tmp_path_factory.mktemp("nulldelegate"))


def _bench(files: dict[str, Path], *args: str | Path, smoke: bool = False) -> tuple[int, dict[str, Any], str]:
    mode = ["--smoke"] if smoke else ["--runs", "100", "--warmup", "1"]
    proc = subprocess.run(
        [sys.executable, str(BENCH), *mode, "--model", str(files["fp32.tflite"]), "--model",
         str(files["int8.tflite"]), "--sample", str(files["sample.npz"]), *map(str, args)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    return proc.returncode, json.loads(proc.stdout) if proc.stdout else {}, proc.stderr


def test_default_records_xnnpack_and_threads(files: dict[str, Path]) -> None:
    rc, doc, err = _bench(files, "--threads", "2")
    assert rc == 0, err
    assert doc["delegate"] == {"name": "xnnpack", "builtin": True} and doc["threads"] == 2
    for result in doc["results"].values():
        assert result["threads"] == 2
        delegate = result["delegate"]
        assert delegate["name"] == "xnnpack" and delegate["builtin"] is True
        assert delegate["model_nodes"] >= 1 and delegate["partitions"] >= 1  # XNNPACK took the conv net


@pytest.mark.parametrize("smoke", [False, True], ids=["benchmark", "smoke"])
@pytest.mark.parametrize(("library", "why"), [
    ("/nonexistent/libfoo.so", "cannot open shared object file"),
    ("text.so", "OSError"),
    ("exe.so", "cannot dynamically load"),
])
def test_a_delegate_that_does_not_load_is_a_clear_error(files: dict[str, Path], library: str, why: str,
                                                        smoke: bool) -> None:
    path = str(files.get(library, library))
    rc, doc, err = _bench(files, "--delegate", path, smoke=smoke)
    assert rc == EXIT_DELEGATE, err
    error = doc["error"]
    assert error["kind"] == "delegate" and error["delegate"]["path"] == path
    assert f"delegate {path} failed to load" in error["message"] and why in error["message"]
    assert "no CPU fallback" in error["message"] and "results" not in doc and "smoke" not in doc
    assert f"ERROR: delegate {path} failed to load" in err


def test_delegate_options_need_an_external_delegate(files: dict[str, Path]) -> None:
    rc, doc, err = _bench(files, "--delegate-option", "a=b")
    assert rc == 2 and doc == {} and "only with an external --delegate" in err


def test_an_external_delegate_that_claims_nothing_is_recorded(files: dict[str, Path], null_delegate: Path) -> None:
    rc, doc, err = _bench(files, "--delegate", null_delegate, "--delegate-option", "mode=test", "--threads", "1")
    assert rc == 0, err
    spec = {"name": "libnulldelegate.so", "builtin": False, "path": str(null_delegate), "options": {"mode": "test"}}
    assert doc["delegate"] == spec and doc["threads"] == 1
    for result in doc["results"].values():
        assert result["delegate"] == {**spec, "model_nodes": result["delegate"]["model_nodes"], "partitions": 0,
                                      "fallback_partitions": 1}  # XNNPACK took what the delegate left
        assert result["accuracy"] >= 0.9
    assert "claimed no op of fp32.tflite" in err


@pytest.mark.parametrize("smoke", [False, True], ids=["benchmark", "smoke"])
@pytest.mark.parametrize(("option", "why"), [
    ("fail_create=1", "failed to load (ValueError: Failed to load delegate from {path} nulldelegate: refusing"),
    ("fail_prepare=1", "loaded but failed to apply to"),
])
def test_a_delegate_whose_init_fails_is_a_clear_error(files: dict[str, Path], null_delegate: Path, option: str,
                                                      why: str, smoke: bool) -> None:
    rc, doc, err = _bench(files, "--delegate", null_delegate, "--delegate-option", option, smoke=smoke)
    assert rc == EXIT_DELEGATE, err
    assert why.format(path=null_delegate) in doc["error"]["message"]


def test_smoke_runs_with_the_external_delegate(files: dict[str, Path], null_delegate: Path) -> None:
    rc, doc, err = _bench(files, "--delegate", null_delegate, "--threads", "2", smoke=True)
    assert rc == 0, err
    assert doc["delegate"]["path"] == str(null_delegate) and doc["threads"] == 2
    assert all(r["ok"] for r in doc["smoke"].values())
