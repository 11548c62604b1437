"""Gate step: bless only what the test data proves (the DAG only wires it).

Every check finds pass, fail or inconclusive, and the gate ships only what passes. The run's outcome is
blessed, not_blessed (the data shows a problem) or inconclusive (nothing failed, but the evidence is short).

* evidence: every class is in the test split with at least ``gate.min_test_per_class`` images, else not blessed;
* floor: fp32 and every variant reach ``gate.min_accuracy``;
* non-inferiority vs fp32: the one-sided upper confidence bound (level ``1 - gate.significance``, Tango's score
  interval for paired proportions, tasks/ml/stats.py) of the paired accuracy drop is at most
  ``gate.max_accuracy_drop_pp``. A bound over the margin is *inconclusive* (with the test images that would be
  needed at the observed discordance) unless the observed drop itself is over it, which *fails*;
* per class: the same bound on each class's recall drop against ``gate.max_class_drop_pp`` (a variant that
  collapses one class while the mean holds fails, naming the class);
* champion/challenger: the candidate's fp32 against the fp32 of the model currently blessed for this data, both on
  this run's test split, with its own margin ``gate.champion_margin_pp``.

A new check is one function ``(mode, table, gate) -> Check | None`` added to ``VARIANT_CHECKS``. ``decide`` is pure;
``run`` reads the evaluation. Nothing blessed is a verdict (with reasons), not an error: devices keep their release.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.core import keys
from tasks.core.config import GateConfig
from tasks.core.metrics import EvalMetrics
from tasks.core.results import ArtifactRef, EvaluateResult
from tasks.core.step import StepContext
from tasks.core.verdict import ChampionVerdict, Check, Finding, GateOutcome, GateVerdict, VariantVerdict
from tasks.ml.stats import DropBound, drop_bound, examples_needed, paired

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
    classes: tuple[str, ...] = ()  # index -> class name; empty: the classes seen in the labels

    @classmethod
    def from_metrics(cls, metrics: EvalMetrics) -> EvalTable:
        champ, variants = metrics.champion, metrics.variants
        return cls(list(metrics.labels), {m: list(p) for m, p in metrics.predictions.items()},
                   {m: v.size_bytes for m, v in variants.items()},
                   {m: v.gzip_or_size for m, v in variants.items()},
                   champ.run_id if champ else None,
                   list(champ.predictions) if champ and champ.predictions is not None else None,
                   champ.skipped if champ else "", tuple(metrics.classes))

    def class_name(self, index: int) -> str:
        return self.classes[index] if index < len(self.classes) else str(index)

    def class_indices(self) -> list[int]:
        return list(range(len(self.classes))) if self.classes else sorted(set(self.labels))


# --- checks ---------------------------------------------------------------------------------------------------
def _bounded(what: str, bound: DropBound, margin: float) -> Check:
    """Pass when the upper bound is within the margin, fail when the observed drop is over it, else inconclusive."""
    numbers = (f"{what} {bound.drop_pp:+.2f} pp, {bound.level:.0%} bounds [{bound.lower_pp:+.2f}, "
               f"{bound.upper_pp:+.2f}] pp, n={bound.n}, discordant {bound.only_reference} vs "
               f"{bound.only_candidate}")
    if bound.upper_pp <= margin:
        return Check(Finding.PASS, f"{numbers}: non-inferior within {margin} pp")
    if bound.drop_pp > margin:
        return Check(Finding.FAIL, f"{numbers}: over the {margin} pp margin")
    need = examples_needed(bound, margin)
    more = f"; about {need} test images would show it at this discordance" if need else ""
    return Check(Finding.INCONCLUSIVE, f"{numbers}: the data cannot rule out more than {margin} pp{more}",
                 examples_needed=need)


def floor_check(mode: str, table: EvalTable, gate: GateConfig) -> Check | None:
    acc = sum(p == y for p, y in zip(table.predictions[mode], table.labels, strict=True)) / len(table.labels)
    if acc < gate.min_accuracy:
        return Check(Finding.FAIL, f"accuracy {acc:.4f} below the floor gate.min_accuracy={gate.min_accuracy:.4f}")
    return None


def drop_check(mode: str, table: EvalTable, gate: GateConfig) -> Check | None:
    if mode == "fp32":
        return None
    pr = paired(table.labels, table.predictions["fp32"], table.predictions[mode])
    return _bounded("drop vs fp32", drop_bound(pr, 1 - gate.significance), gate.max_accuracy_drop_pp)


def class_check(mode: str, table: EvalTable, gate: GateConfig) -> Check | None:
    """The worst class decides: a failed class over an inconclusive one, and the class is named."""
    if mode == "fp32":
        return None
    worst: Check | None = None
    for c in table.class_indices():
        rows = [i for i, y in enumerate(table.labels) if y == c]
        if not rows:
            continue
        pr = paired([c] * len(rows), [table.predictions["fp32"][i] for i in rows],
                    [table.predictions[mode][i] for i in rows])
        check = _bounded(f"class {table.class_name(c)!r} recall drop", drop_bound(pr, 1 - gate.significance),
                         gate.max_class_drop_pp)
        if check.finding != Finding.PASS and (worst is None or check.finding.rank > worst.finding.rank):
            worst = check
    return worst


VARIANT_CHECKS: tuple[Callable[[str, EvalTable, GateConfig], Check | None], ...] = (
    floor_check, drop_check, class_check)


def _variant(mode: str, table: EvalTable, gate: GateConfig) -> VariantVerdict:
    checks = [c for check in VARIANT_CHECKS if (c := check(mode, table, gate)) is not None]
    finding = max((c.finding for c in checks), key=lambda f: f.rank, default=Finding.PASS)
    pr = paired(table.labels, table.predictions["fp32"], table.predictions[mode])
    bound = drop_bound(pr, 1 - gate.significance)
    reasons = [c.reason for c in checks] or [f"accuracy {pr.acc_b:.4f}: the baseline every variant is compared with"]
    needed = [c.examples_needed for c in checks if c.examples_needed]
    return VariantVerdict(
        passed=finding == Finding.PASS, drop_pp=pr.drop_pp, reasons=tuple(reasons),
        p_value=None if mode == "fp32" else pr.p_value, accuracy=pr.acc_b, size_bytes=table.sizes.get(mode),
        gzip_bytes=table.gzip_sizes.get(mode), significant=pr.drop_pp > 0 and pr.p_value < gate.significance,
        only_fp32_right=pr.only_a, only_variant_right=pr.only_b, finding=finding.value,
        drop_upper_pp=None if mode == "fp32" else bound.upper_pp,
        drop_lower_pp=None if mode == "fp32" else bound.lower_pp, examples_needed=max(needed, default=None))


def _champion(table: EvalTable, gate: GateConfig) -> ChampionVerdict | None:
    if table.champion_run is None or table.champion_predictions is None:
        return None
    pr = paired(table.labels, table.champion_predictions, table.predictions["fp32"])
    bound = drop_bound(pr, 1 - gate.significance)
    check = _bounded(f"fp32 vs champion {table.champion_run}", bound, gate.champion_margin_pp)
    return ChampionVerdict(run_id=table.champion_run, champion_accuracy=pr.acc_a, candidate_accuracy=pr.acc_b,
                           drop_pp=pr.drop_pp, p_value=pr.p_value, only_champion_right=pr.only_a,
                           only_candidate_right=pr.only_b, significantly_worse=check.finding == Finding.FAIL,
                           finding=check.finding.value, reason=check.reason, drop_upper_pp=bound.upper_pp,
                           margin_pp=gate.champion_margin_pp)


def _evidence(table: EvalTable, gate: GateConfig) -> str | None:
    """Why the test split cannot support any verdict (a missing or thin class), or None."""
    counts = Counter(table.labels)
    short = {table.class_name(c): counts.get(c, 0) for c in table.class_indices()
             if counts.get(c, 0) < gate.min_test_per_class}
    if len(table.class_indices()) < 2:
        return f"the test split holds {len(set(table.labels))} class(es): accuracy on one class proves nothing"
    if short:
        return (f"too little evidence: test images per class {short} below gate.min_test_per_class="
                f"{gate.min_test_per_class} (add images of those classes or lower the minimum)")
    return None


def _rescue(variants: dict[str, VariantVerdict], wanted: list[str]) -> tuple[list[str], dict[str, str], str]:
    """Post-training int8 did not pass: ship qat_int8 (same int8 I/O and kernels) in its place when it passed."""
    int8, qat = variants.get("int8"), variants.get("qat_int8")
    if int8 is None or int8.passed or qat is None:
        return wanted, {}, ""
    if not qat.passed:
        return wanted, {}, f"int8 rescue: int8 did not pass and qat_int8 did not either ({'; '.join(qat.reasons)})"
    out = [m for m in wanted if m != "qat_int8"]
    out = [("qat_int8" if m == "int8" else m) for m in out] if "int8" in out else [*out, "qat_int8"]
    return out, {"int8": "qat_int8"}, (f"int8 rescue: post-training int8 did not pass ({'; '.join(int8.reasons)});"
                                      f" qat_int8 ships in its place ({'; '.join(qat.reasons)})")


def decide(table: EvalTable, gate: GateConfig, tflite: dict[str, ArtifactRef], sample: ArtifactRef,
           int8_rescue: bool = False) -> GateVerdict:
    """The verdict for one evaluation table (pure: no I/O)."""
    common = {"tflite": tflite, "sample": sample, "max_accuracy_drop_pp": gate.max_accuracy_drop_pp,
              "min_accuracy": gate.min_accuracy, "significance": gate.significance,
              "test_examples": len(table.labels)}

    def refuse(outcome: GateOutcome, reasons: list[str], **more: object) -> GateVerdict:
        tail = "devices keep their current release"
        reasons.append(f"{outcome.value.upper().replace('_', ' ')}: nothing is announced for rollout; {tail}")
        return GateVerdict(blessed=False, deploy=(), current=None, reasons=tuple(reasons), outcome=outcome.value,
                           **common, **more)  # type: ignore[arg-type]

    if "fp32" not in table.predictions:
        why = f"the gate needs the fp32 baseline; evaluated: {sorted(table.predictions)}"
        return refuse(GateOutcome.NOT_BLESSED, [why], variants={})
    if why := _evidence(table, gate):
        return refuse(GateOutcome.NOT_BLESSED, [why], variants={})
    variants = {mode: _variant(mode, table, gate) for mode in sorted(table.predictions)}
    champ = _champion(table, gate)
    reasons = [table.champion_skipped or (champ.reason if champ else
                                          "no champion: this is the first blessed run for this dataset and classes")]
    if not variants["fp32"].passed:
        why = f"fp32 {variants['fp32'].reasons[0]}: the model is not good enough to ship"
        return refuse(GateOutcome.NOT_BLESSED, [why, *reasons], variants=variants, champion=champ)
    if champ is not None and champ.finding != Finding.PASS:
        outcome = GateOutcome.NOT_BLESSED if champ.finding == Finding.FAIL else GateOutcome.INCONCLUSIVE
        return refuse(outcome, reasons, variants=variants, champion=champ)
    passed = [m for m, v in variants.items() if v.passed]
    wanted = list(gate.deploy_variants) or list(variants)
    rescued: dict[str, str] = {}
    if int8_rescue:
        wanted, rescued, why = _rescue(variants, wanted)
        reasons += [why] if why else []
    deploy = [m for m in wanted if m in passed]
    if not deploy:
        unsure = [m for m in wanted if m in variants and variants[m].finding == Finding.INCONCLUSIVE]
        reasons.append(f"no requested variant passed (requested {wanted}, passed {passed}, inconclusive {unsure})")
        return refuse(GateOutcome.INCONCLUSIVE if unsure else GateOutcome.NOT_BLESSED, reasons, variants=variants,
                      champion=champ)
    current = min(deploy, key=lambda m: (table.sizes[m], m))
    held = {m: v.finding for m, v in variants.items() if not v.passed}
    reasons.append(f"blessed {deploy}; current = {current}, the smallest that passed ({table.sizes[current]} bytes)"
                   + (f"; not shipped: {held}" if held else ""))
    return GateVerdict(blessed=True, deploy=tuple(deploy), current=current, variants=variants, champion=champ,
                       reasons=tuple(reasons), rescued=rescued, outcome=GateOutcome.BLESSED.value, **common)


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
        log.info("gate %-8s %s %s", mode, v.finding.upper(), "; ".join(v.reasons))
    return verdict
