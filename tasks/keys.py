"""Artifact key layout of one run. Every key is under ``runs/<run_id>/``; nothing is ever "latest"."""

from __future__ import annotations


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def model(run_id: str, name: str = "model.keras") -> str:
    return f"runs/{run_id}/model/{name}"


def tflite(run_id: str, mode: str) -> str:
    return f"runs/{run_id}/tflite/{mode}.tflite"


def evaluation(run_id: str, name: str = "metrics.json") -> str:
    return f"runs/{run_id}/eval/{name}"


def device(run_id: str, device_name: str) -> str:
    return f"runs/{run_id}/devices/{device_name}.json"


def report(run_id: str) -> str:
    return f"runs/{run_id}/report/index.html"


def manifest(run_id: str) -> str:
    return f"runs/{run_id}/manifest.json"
