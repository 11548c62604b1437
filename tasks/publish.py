"""Publish step: HTML report, then ``manifest.json`` LAST. A run without a manifest did not finish."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from tasks import keys, report
from tasks.exceptions import StorageError
from tasks.step import StepContext
from tasks.version import code_version

log = logging.getLogger(__name__)
SCHEMA = 1


def _device_entry(ctx: StepContext, result: dict[str, Any]) -> dict[str, Any]:
    """Merge the deploy/benchmark XCom of one device with its full benchmark JSON from the store."""
    doc = ctx.store.get_json(result["key"])
    benchmarks = {
        mode: {"latency_ms": {q: r["latency_ms"][q] for q in ("p50", "p90", "p99")}, "accuracy": r["accuracy"],
               "load_ms": r.get("load_ms"), "peak_rss_mb": r.get("peak_rss_mb")}
        for mode, r in doc.get("results", {}).items()
    }
    current = result["current_variant"]
    return {
        "name": result["device"],
        "arch": result.get("arch") or doc.get("device", {}).get("arch"),
        "release": result["release"],
        "current_variant": current,
        "label": doc.get("label", result.get("benchmark", {}).get("label")),
        "facts": doc.get("device", {}),
        "benchmark": {**benchmarks.get(current, {}), "label": doc.get("label")},
        "benchmarks": benchmarks,
        "key": result["key"],
    }


def build_manifest(ctx: StepContext, gate: dict[str, Any], devices: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = ctx.store.get_json(keys.evaluation(ctx.run_id))
    dataset = ctx.store.get_json(keys.model(ctx.run_id, "dataset.json"))
    verdicts = gate.get("verdicts", {})
    variants = {
        mode: {"accuracy": m["accuracy"], "size_bytes": m["size_bytes"],
               "latency_ms": {"p50": m["latency_ms"]["p50"], "p90": m["latency_ms"]["p90"]},
               "latency_label": m.get("latency_label", "host"), "agreement": m["agreement"],
               "drop_pp": verdicts.get(mode, {}).get("drop_pp"), "passed_gate": verdicts.get(mode, {}).get("passed")}
        for mode, m in metrics["variants"].items()
    }
    return {
        "schema": SCHEMA,
        "run_id": ctx.run_id,
        "code_version": code_version(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": ctx.config.to_dict(),
        "dataset": dataset,
        "keras": metrics["keras"],
        "variants": variants,
        "gate": {k: gate[k] for k in ("max_accuracy_drop_pp", "deploy", "current") if k in gate},
        "devices": [_device_entry(ctx, d) for d in sorted(devices, key=lambda d: d["device"])],
        "artifacts": [],
    }


def list_artifacts(ctx: StepContext) -> list[dict[str, Any]]:
    """Every object of the run except the manifest, with the sha256 recorded when it was uploaded."""
    manifest_key = keys.manifest(ctx.run_id)
    out = []
    for obj in ctx.store.list(keys.run_prefix(ctx.run_id)):
        if obj["Key"] == manifest_key:
            continue
        art = ctx.store.head(obj["Key"])
        if not art.sha256:
            raise StorageError(f"{obj['Key']} has no sha256 metadata: it was not written through tasks.storage")
        out.append({**art.as_dict(), "name": obj["Key"][len(keys.run_prefix(ctx.run_id)):]})
    return out


def run(ctx: StepContext) -> dict[str, Any]:
    manifest = build_manifest(ctx, ctx.need("gate"), ctx.inputs.get("devices") or [])
    page = report.run(ctx.store, ctx.run_id, manifest)
    manifest["artifacts"] = list_artifacts(ctx)
    manifest["report_key"] = page.key
    art = ctx.store.put_json(keys.manifest(ctx.run_id), manifest)  # last write of the run
    log.info("manifest %s (%d artifacts)", ctx.store.uri(art.key), len(manifest["artifacts"]))
    return {"manifest_uri": ctx.store.uri(art.key), "report_uri": ctx.store.uri(page.key),
            "artifacts": len(manifest["artifacts"])}
