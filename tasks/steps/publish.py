"""Publish step: HTML report, then ``manifest.json`` LAST. A run without a manifest did not finish.

The manifest is assembled from the records the upstream tasks handed over (train, evaluation, gate
verdict); nothing is re-read from the store and reshaped here. Device results belong to the rollouts of
the run (``rollouts/<id>/record.json``), which come after it.
"""

from __future__ import annotations

import datetime as dt
import logging

from tasks.core import keys
from tasks.core.exceptions import StorageError
from tasks.core.manifest import EvaluationSummary, ManifestArtifact, ManifestVariant, RunManifest, TrainSummary
from tasks.core.results import EvaluateResult, PublishResult, TrainResult
from tasks.core.step import StepContext
from tasks.core.verdict import GateVerdict
from tasks.core.version import code_version
from tasks.registry import runs
from tasks.report import run_report
from tasks.report.history import HISTORY_RUNS, history_rows

log = logging.getLogger(__name__)


def build_manifest(ctx: StepContext, train: TrainResult, evaluation: EvaluateResult, verdict: GateVerdict
                   ) -> RunManifest:
    """The manifest of this run from the upstream records; ``artifacts`` and ``report_key`` come last."""
    return RunManifest(
        run_id=ctx.run_id, code_version=code_version(),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), config=ctx.config.to_dict(),
        dataset=train.dataset,
        train=TrainSummary(train.model, train.keras_test_accuracy, train.best_val_accuracy, train.epochs_run,
                           train.source),
        evaluation=EvaluationSummary(evaluation.test_examples, evaluation.keras_accuracy, evaluation.metrics),
        variants={mode: ManifestVariant.of(m, verdict.variants.get(mode)) for mode, m in evaluation.variants.items()},
        gate=verdict)


def list_artifacts(ctx: StepContext) -> tuple[ManifestArtifact, ...]:
    """Every object of the run except the manifest, with the sha256 recorded when it was uploaded."""
    manifest_key = keys.manifest(ctx.run_id)
    out = []
    for obj in ctx.store.list(keys.run_prefix(ctx.run_id)):
        if obj["Key"] == manifest_key:
            continue
        art = ctx.store.head(obj["Key"])
        if not art.sha256:
            raise StorageError(f"{obj['Key']} has no sha256 metadata: it was not written through tasks.core.storage")
        out.append(ManifestArtifact(obj["Key"][len(keys.run_prefix(ctx.run_id)):], art.key, art.sha256,
                                    art.size_bytes))
    return tuple(out)


def _device_trend(ctx: StepContext) -> dict[str, tuple[float | None, str | None]]:
    """Earlier runs' on-device p50 from their rollout records; the report goes out without it if unreadable."""
    from tasks.fleet.history import RECENT_ROLLOUTS, device_trend, recent_records

    try:
        return device_trend(recent_records(ctx.store, RECENT_ROLLOUTS))
    except StorageError as exc:
        log.warning("history without device figures: cannot read the rollout records (%s)", exc)
        return {}


def run(ctx: StepContext) -> PublishResult:
    verdict = GateVerdict.from_xcom(ctx.need("verdict"))
    manifest = build_manifest(ctx, TrainResult.from_xcom(ctx.need("train")),
                              EvaluateResult.from_xcom(ctx.need("evaluation")), verdict)
    history = history_rows(runs.recent_manifests(ctx.store, 5 * HISTORY_RUNS), manifest, _device_trend(ctx))
    page = run_report.run(ctx.store, ctx.run_id, manifest, history)
    manifest = manifest.with_artifacts(list_artifacts(ctx), page.key)
    art = ctx.store.put_json(keys.manifest(ctx.run_id), manifest.to_dict())  # last write of the run
    log.info("manifest %s (%d artifacts)", ctx.store.uri(art.key), len(manifest.artifacts))
    return PublishResult(manifest=ctx.store.ref(art), report=ctx.store.ref(page), artifacts=len(manifest.artifacts),
                         blessed=verdict.blessed)
