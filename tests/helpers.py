"""Builders shared by tests: small real models, never mocks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def conn_env_var(conn_id: str) -> str:
    """The environment variable Airflow reads a connection from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def export_connections(mp: Any, connections: dict[str, Any]) -> None:
    """Expose connections to Airflow as a deployment would (AIRFLOW_CONN_* JSON), through a MonkeyPatch."""
    for conn_id, conn in connections.items():
        mp.setenv(conn_env_var(conn_id), json.dumps(conn))


def tiny_tflite_release(tmp: Path, samples: int = 64) -> dict[str, Path]:
    """fp32 and full-int8 TFLite files of an 8x8x3 three-class model, converted through tasks.steps.quantize,
    plus ``sample.npz`` labelled by the Keras model itself (so fp32 accuracy on it is 1.0)."""
    import keras
    import numpy as np

    from tasks.core.modes import converter_settings
    from tasks.ml.convert import convert

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.export(str(tmp / "saved"), verbose=False)
    x = np.random.default_rng(0).uniform(0, 255, size=(samples, 8, 8, 3)).astype(np.float32)
    np.savez(tmp / "sample.npz", x=x, y=model.predict(x, verbose=0).argmax(axis=1))
    calibration = lambda: ([x[i : i + 1]] for i in range(len(x)))  # noqa: E731
    for mode in ("fp32", "int8"):
        blob = convert(tmp / "saved", converter_settings(mode), calibration if mode == "int8" else None)
        (tmp / f"{mode}.tflite").write_bytes(blob)
    return {"fp32.tflite": tmp / "fp32.tflite", "int8.tflite": tmp / "int8.tflite", "sample.npz": tmp / "sample.npz"}


NULL_DELEGATE_SOURCE = Path(__file__).resolve().parent / "nulldelegate.c"


def null_delegate_library(tmp: Path) -> Path:
    """Compile tests/nulldelegate.c (a real external delegate that claims no node) into ``libnulldelegate.so``.

    Skips the calling test when no C compiler is installed (``apt-get install gcc``)."""
    import shutil
    import subprocess

    import pytest

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the test delegate (apt-get install gcc)")
    out = tmp / "libnulldelegate.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(out), str(NULL_DELEGATE_SOURCE)],
                   check=True, capture_output=True, text=True)
    return out


def run_coroutine(coro: Any) -> Any:
    """``asyncio.run(coro)`` in a thread of its own. Once a browser test ran, pytest-playwright's sync API keeps an
    event loop running in the main thread for the rest of the session, where ``asyncio.run`` refuses to start."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def task_states(dag_run: Any) -> dict[str, set[str]]:
    """task id -> the states of its instances (mapped ones collapse): what a failed DAG-run assertion prints."""
    out: dict[str, set[str]] = {}
    for ti in dag_run.get_task_instances():
        out.setdefault(ti.task_id, set()).add(str(ti.state))
    return out
