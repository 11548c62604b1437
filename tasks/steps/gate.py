"""Gate step: decide from data what may ship, with every reason and number (the DAG only wires it).

* floor: fp32 and every variant must reach ``gate.min_accuracy`` on the test split;
* variants: the drop vs fp32 on the SAME images, with an exact McNemar test. A drop over
  ``gate.max_accuracy_drop_pp`` fails only when it is significant at ``gate.significance``; otherwise it is
  reported as test-set noise;
* champion/challenger: the candidate's fp32 vs the fp32 of the model currently blessed for this dataset and
  classes, both on this run's test split; a challenger significantly worse ships nothing.

``decide`` is pure; ``run`` reads the evaluation through the EvaluateResult and the store. Nothing blessed is a
verdict (blessed=False with reasons), not an error: deploy and benchmark are skipped, devices keep their release.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tasks.core import keys
from tasks.core.config import GateConfig
from tasks.core.metrics import EvalMetrics
from tasks.core.results import ArtifactRef, ChampionVerdict, EvaluateResult, GateVerdict, VariantVerdict
from tasks.core.step import StepContext
from tasks.ml.stats import paired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalTable:
    """Per-image predictions of one evaluation (``eval/metrics.json``), the gate's only input data."""

    labels: list[int]
    predictions: dict[str, list[int]]
    sizes: dict[str, int]
    gzip_sizes: dict[str, int]
    champion_run: str | None = None
    champion_predictions: list[int] | None = None
    champion_skipped: str = ""  # why no champion was evaluated although one may exist

    @classmethod
    def from_metrics(cls, metrics: EvalMetrics) -> EvalTable:
        champ, variants = metrics.champion, metrics.variants
        return cls(list(metrics.labels), {m: list(p) for m, p in metrics.predictions.items()},
                   {m: v.size_bytes for m, v in variants.items()},
                   {m: v.gzip_or_size for m, v in variants.items()},
                   champ.run_id if champ else None,
                   list(champ.predictions) if champ and champ.predictions is not None else None,
                   champ.skipped if champ else "")


def _variant(mode: str, table: EvalTable, gate: GateConfig) -> VariantVerdict:
    pr = paired(table.labels, table.predictions["fp32"], table.predictions[mode])
    acc, reasons, passed = pr.acc_b, [], True
    if acc < gate.min_accuracy:
        passed = False
        reasons.append(f"accuracy {acc:.4f} below the floor gate.min_accuracy={gate.min_accuracy:.4f}")
    significant = pr.drop_pp > 0 and pr.p_value < gate.significance
    if mode != "fp32":
        numbers = (f"McNemar p={pr.p_value:.4g}, {pr.only_a} image(s) only fp32 got right, {pr.only_b} only "
                   f"{mode}, n={pr.n}")
        if pr.drop_pp > gate.max_accuracy_drop_pp and significant:
            passed = False
            reasons.append(f"drop {pr.drop_pp:.2f} pp vs fp32 > max {gate.max_accuracy_drop_pp} pp and "
                           f"significant ({numbers})")
        elif pr.drop_pp > gate.max_accuracy_drop_pp:
            reasons.append(f"drop {pr.drop_pp:.2f} pp vs fp32 > max {gate.max_accuracy_drop_pp} pp but NOT "
                           f"significant at {gate.significance} ({numbers}): within test-set noise")
        else:
            reasons.append(f"drop {pr.drop_pp:.2f} pp vs fp32 within max {gate.max_accuracy_drop_pp} pp ({numbers})")
    return VariantVerdict(passed=passed, drop_pp=pr.drop_pp, reasons=tuple(reasons),
                          p_value=None if mode == "fp32" else pr.p_value, accuracy=acc,
                          size_bytes=table.sizes.get(mode), gzip_bytes=table.gzip_sizes.get(mode),
                          significant=significant, only_fp32_right=pr.only_a, only_variant_right=pr.only_b)


def _champion(table: EvalTable, gate: GateConfig) -> ChampionVerdict | None:
    if table.champion_run is None or table.champion_predictions is None:
        return None
    pr = paired(table.labels, table.champion_predictions, table.predictions["fp32"])
    return ChampionVerdict(run_id=table.champion_run, champion_accuracy=pr.acc_a, candidate_accuracy=pr.acc_b,
                           drop_pp=pr.drop_pp, p_value=pr.p_value, only_champion_right=pr.only_a,
                           only_candidate_right=pr.only_b,
                           significantly_worse=pr.drop_pp > 0 and pr.p_value < gate.significance)


def _champion_reason(champ: ChampionVerdict | None, gate: GateConfig) -> str:
    if champ is None:
        return "no champion: this is the first blessed run for this dataset and classes"
    numbers = (f"fp32 {champ.candidate_accuracy:.4f} vs champion {champ.run_id} {champ.champion_accuracy:.4f}, "
               f"drop {champ.drop_pp:.2f} pp, McNemar p={champ.p_value:.4g}")
    if champ.significantly_worse:
        return f"challenger is significantly worse than the champion at {gate.significance} ({numbers})"
    return f"challenger is not significantly worse than the champion ({numbers})"


def _rescue(variants: dict[str, VariantVerdict], wanted: list[str]) -> tuple[list[str], dict[str, str], str]:
    """Post-training int8 failed: ship qat_int8 (same int8 I/O and kernels) in its place when it passed."""
    int8, qat = variants.get("int8"), variants.get("qat_int8")
    if int8 is None or int8.passed or qat is None:
        return wanted, {}, ""
    if not qat.passed:
        return wanted, {}, f"int8 rescue: int8 failed and qat_int8 failed too ({'; '.join(qat.reasons)})"
    out = [m for m in wanted if m != "qat_int8"]
    out = [("qat_int8" if m == "int8" else m) for m in out] if "int8" in out else [*out, "qat_int8"]
    return out, {"int8": "qat_int8"}, (f"int8 rescue: post-training int8 failed ({'; '.join(int8.reasons)}); "
                                      f"qat_int8 ships in its place ({'; '.join(qat.reasons)})")


def decide(table: EvalTable, gate: GateConfig, tflite: dict[str, ArtifactRef], sample: ArtifactRef,
           int8_rescue: bool = False) -> GateVerdict:
    """The verdict for one evaluation table (pure: no I/O)."""
    common = {"tflite": tflite, "sample": sample, "max_accuracy_drop_pp": gate.max_accuracy_drop_pp,
              "min_accuracy": gate.min_accuracy, "significance": gate.significance,
              "test_examples": len(table.labels)}
    if "fp32" not in table.predictions:
        return GateVerdict(blessed=False, deploy=(), current=None, variants={}, **common,
                           reasons=(f"the gate needs the fp32 baseline; evaluated: {sorted(table.predictions)}",))
    variants = {mode: _variant(mode, table, gate) for mode in sorted(table.predictions)}
    champ = _champion(table, gate)
    reasons = [table.champion_skipped or _champion_reason(champ, gate)]
    fp32 = variants["fp32"]
    blocked = champ is not None and champ.significantly_worse
    if not fp32.passed:
        blocked = True
        reasons.insert(0, f"fp32 {fp32.reasons[0]}: the model is not good enough to ship")
    passed = [m for m, v in variants.items() if v.passed]
    wanted = list(gate.deploy_variants) or passed
    rescued: dict[str, str] = {}
    if int8_rescue:
        wanted, rescued, why = _rescue(variants, wanted)
        reasons += [why] if why else []
    deploy = [] if blocked else [m for m in wanted if m in passed]
    if not deploy:
        if not blocked:
            reasons.append(f"no deployable variant passed (requested {wanted or 'any'}, passed {passed})")
        reasons.append("NOT BLESSED: nothing is announced for rollout; devices keep their current release")
        return GateVerdict(blessed=False, deploy=(), current=None, variants=variants, champion=champ,
                           reasons=tuple(reasons), **common)
    current = min(deploy, key=lambda m: (table.sizes[m], m))
    failed = sorted(set(variants) - set(passed))
    reasons.append(f"blessed {deploy}; current = {current}, the smallest that passed ({table.sizes[current]} bytes)"
                   + (f"; failed: {failed}" if failed else ""))
    return GateVerdict(blessed=True, deploy=tuple(deploy), current=current, variants=variants, champion=champ,
                       reasons=tuple(reasons), rescued=rescued, **common)


def run(ctx: StepContext) -> GateVerdict:
    """Inputs: ``{"evaluation": EvaluateResult}``; writes ``eval/gate.json``; -> GateVerdict.

    A blessed verdict is announced to the rollout DAG (the blessed-model asset); which devices get it, and which
    variant each device class runs, is the rollout's decision, measured on its canaries.
    """
    evaluated = EvaluateResult.from_xcom(ctx.need("evaluation"))
    with tempfile.TemporaryDirectory() as tmp:
        raw = json.loads(ctx.store.fetch(evaluated.metrics, Path(tmp) / "metrics.json").read_text())
    metrics = EvalMetrics.from_dict(raw, evaluated.metrics.uri)
    verdict = decide(EvalTable.from_metrics(metrics), ctx.config.gate, evaluated.tflite, evaluated.sample,
                     int8_rescue=ctx.config.quantize.int8_rescue)
    ctx.store.put_json(keys.evaluation(ctx.run_id, "gate.json"), verdict.to_xcom())
    for reason in verdict.reasons:
        log.info("gate: %s", reason)
    for mode, v in verdict.variants.items():
        log.info("gate %-8s %s %s", mode, "PASS" if v.passed else "FAIL", "; ".join(v.reasons))
    return verdict
