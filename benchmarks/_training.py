"""Shared by the training benchmarks: run the real train step in a subprocess, then score its model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]


@dataclass(frozen=True)
class TrainRun:
    run_id: str
    wall_s: float  # the whole step process (TF import, data, fit, save)
    fit_s: float  # model.fit alone, as the step logs it
    result: dict[str, Any]  # the TrainResult JSON
    backbone: str  # what the step built (model.backbone 'auto' resolved)


def train(run_id: str, profile: str, sets: list[str], env: dict[str, str] | None = None) -> TrainRun:
    """``python -m tasks.cli step train`` with ``--set`` overrides and extra environment (e.g. oneDNN)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "tasks.cli", "step", "train", "--run-id", run_id, "--profile", profile,
               "--result-file", str(out)]
        for s in sets:
            cmd += ["--set", s]
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                              timeout=1800)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"train {run_id} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        fit = re.search(r"fit \d+ epoch\(s\) done in ([\d.]+)s", proc.stderr)
        backbone = re.search(r"backbone (\w+) \(model.backbone", proc.stderr)
        return TrainRun(run_id, wall, float(fit.group(1)) if fit else float("nan"), json.loads(out.read_text()),
                        backbone.group(1) if backbone else "?")


def quantize(run_id: str, trained: TrainRun, mode: str, profile: str, sets: list[str]) -> dict[str, Any]:
    """``python -m tasks.cli step quantize`` of one mode on a trained run's model; the QuantizeResult JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "tasks.cli", "step", "quantize", "--run-id", run_id, "--profile", profile,
               "--inputs", json.dumps({"mode": mode, "train": trained.result}), "--result-file", str(out)]
        for s in sets:
            cmd += ["--set", s]
        proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"quantize {run_id} {mode} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def predictions(run: TrainRun, profile: str, sets: list[str]) -> tuple[Any, Any]:
    """(predicted class per test image, true labels) of a run's model, on the test split its config derives."""
    import keras

    from tasks.core.config import load_config
    from tasks.core.storage import ArtifactStore
    from tasks.ml import data

    overrides = dict(s.split("=", 1) for s in sets)
    cfg = load_config(profile, {k: json.loads(v) if _is_json(v) else v for k, v in overrides.items()})
    store = ArtifactStore.from_env()
    splits = data.load_splits(cfg.data, store)
    x, y = data.to_arrays(splits.test)
    with tempfile.TemporaryDirectory() as tmp:
        path = store.fetch(_ref(run.result["model"]), Path(tmp) / "model.keras")
        model = keras.models.load_model(path, compile=False)
    return model.predict(x, batch_size=256, verbose=0).argmax(-1), y


def _ref(model: dict[str, Any]) -> Any:
    from tasks.core.results import ArtifactRef

    return ArtifactRef(model["uri"], model["sha256"], model["size_bytes"], model.get("version_id"))


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except json.JSONDecodeError:
        return False
    return True
