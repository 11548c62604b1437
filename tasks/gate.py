"""Gate: which variants may ship, and which becomes each device's ``current`` (decided from the evaluation)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tasks.config import GateConfig
from tasks.exceptions import EdgeOpsError
from tasks.results import EvaluateResult, GateVerdict, VariantVerdict
from tasks.step import StepContext


class GateError(EdgeOpsError):
    """No variant may be deployed; the run stops before touching any device."""


def select(variants: dict[str, dict[str, Any]], gate: GateConfig) -> dict[str, Any]:
    """Pass = accuracy drop versus fp32 within ``max_accuracy_drop_pp``; smallest passing deployable is current."""
    if "fp32" not in variants:
        raise GateError(f"gate needs the fp32 baseline; evaluated variants: {sorted(variants)}")
    base = variants["fp32"]["accuracy"]
    verdicts: dict[str, dict[str, Any]] = {}
    for mode, m in sorted(variants.items()):
        drop_pp = round((base - m["accuracy"]) * 100, 4)
        verdicts[mode] = {"drop_pp": drop_pp, "passed": drop_pp <= gate.max_accuracy_drop_pp}
    passed = [m for m, v in verdicts.items() if v["passed"]]
    wanted = list(gate.deploy_variants) or passed
    deploy = [m for m in wanted if m in passed]
    if not deploy:
        raise GateError(
            f"no deployable variant passed the gate (max drop {gate.max_accuracy_drop_pp} pp vs fp32 "
            f"{base:.4f}): {verdicts}; requested {wanted}. Raise gate.max_accuracy_drop_pp or retrain"
        )
    current = min(deploy, key=lambda m: (variants[m]["size_bytes"], m))
    return {"max_accuracy_drop_pp": gate.max_accuracy_drop_pp, "verdicts": verdicts, "passed": passed,
            "deploy": deploy, "current": current}


def decide(evaluation: EvaluateResult, gate: GateConfig) -> GateVerdict:
    """The verdict on one evaluation: blessed (what ships, what is current) or not, with the reasons."""
    table = {m: {"accuracy": v.accuracy, "size_bytes": v.size_bytes} for m, v in evaluation.variants.items()}
    try:
        chosen = select(table, gate)
    except GateError as exc:
        reasons = (str(exc),)
        blessed, deploy, current, verdicts = False, (), None, _drops(table)
    else:
        blessed, deploy, current, verdicts = True, tuple(chosen["deploy"]), chosen["current"], chosen["verdicts"]
        reasons = (f"{', '.join(deploy)} within {gate.max_accuracy_drop_pp} pp of fp32; {current} is the smallest",)
    return GateVerdict(
        blessed=blessed, deploy=deploy, current=current, reasons=reasons,
        variants={m: VariantVerdict(passed=v["passed"], drop_pp=v["drop_pp"]) for m, v in verdicts.items()},
        tflite=dict(evaluation.tflite), sample=evaluation.sample, max_accuracy_drop_pp=gate.max_accuracy_drop_pp,
    )


def _drops(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    base = (table.get("fp32") or {}).get("accuracy", 0.0)
    return {m: {"drop_pp": round((base - v["accuracy"]) * 100, 4), "passed": False} for m, v in table.items()}


def run(ctx: StepContext) -> GateVerdict:
    """Gate step: the verdict, and the devices to deploy to (none when nothing is blessed)."""
    verdict = decide(EvaluateResult.from_xcom(ctx.need("evaluation")), ctx.config.gate)
    devices = tuple(ctx.inputs.get("devices") or ()) if verdict.blessed else ()
    return dataclasses.replace(verdict, devices=devices)
