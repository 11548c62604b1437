"""Artifact key layout: the one place that spells a key. Everything of a run is under ``runs/<run_id>/``;
nothing is ever "latest". ``run_id`` is always the safe form (``tasks.core.config.safe_run_id``)."""

from __future__ import annotations

RUNS_PREFIX = "runs/"
MANIFEST_NAME = "manifest.json"


def run_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/"


def model(run_id: str, name: str = "model.keras") -> str:
    return f"{run_prefix(run_id)}model/{name}"


def tflite(run_id: str, mode: str) -> str:
    return f"{run_prefix(run_id)}tflite/{mode}.tflite"


def evaluation(run_id: str, name: str = "metrics.json") -> str:
    return f"{run_prefix(run_id)}eval/{name}"


def device(run_id: str, device_name: str) -> str:
    return f"{run_prefix(run_id)}devices/{device_name}.json"


def report(run_id: str) -> str:
    return f"{run_prefix(run_id)}report/index.html"


def manifest(run_id: str) -> str:
    return f"{run_prefix(run_id)}{MANIFEST_NAME}"


def run_of_manifest(key: str) -> str | None:
    """The run id of a ``runs/<run_id>/manifest.json`` key, None for any other key."""
    parts = key.split("/")
    ok = len(parts) == 3 and f"{parts[0]}/" == RUNS_PREFIX and parts[1] and parts[2] == MANIFEST_NAME
    return parts[1] if ok else None


# --- fleet: rollouts and device states (tasks/fleet/records.py) --------------------------------------------------
ROLLOUTS_PREFIX = "rollouts/"
DEVICES_PREFIX = "devices/"


def rollout_record(rollout_id: str) -> str:
    """Written last by a rollout run: a rollout without it did not finish."""
    return f"{ROLLOUTS_PREFIX}{rollout_id}/record.json"


def device_state(device_name: str) -> str:
    """The device's ``current`` after its last switch (older object versions are its history)."""
    return f"{DEVICES_PREFIX}{device_name}/state.json"


def rollout_device(rollout_id: str, device_name: str) -> str:
    """bench.py's whole document for one device of a rollout."""
    return f"{ROLLOUTS_PREFIX}{rollout_id}/devices/{device_name}.json"


def rollout_report(rollout_id: str) -> str:
    """The rollout's HTML report (tasks/fleet/report.py), written just before its record."""
    return f"{ROLLOUTS_PREFIX}{rollout_id}/report.html"


def rollout_of_record(key: str) -> str | None:
    """The rollout id of a ``rollouts/<id>/record.json`` key, None for any other key."""
    parts = key.split("/")
    ok = len(parts) == 3 and f"{parts[0]}/" == ROLLOUTS_PREFIX and parts[1] and parts[2] == "record.json"
    return parts[1] if ok else None
