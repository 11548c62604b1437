"""Gate: which variants may ship, and which becomes each device's ``current`` (pure, no I/O)."""

from __future__ import annotations

from typing import Any

from tasks.config import GateConfig
from tasks.exceptions import EdgeOpsError


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
