"""Gate: accuracy-drop blessing and the choice of each device's current variant."""

from __future__ import annotations

import pytest

from tasks.config import GateConfig
from tasks.gate import GateError, select

VARIANTS = {
    "fp32": {"accuracy": 0.950, "size_bytes": 400},
    "fp16": {"accuracy": 0.950, "size_bytes": 200},
    "dynamic": {"accuracy": 0.945, "size_bytes": 120},
    "int8": {"accuracy": 0.930, "size_bytes": 100},
}


def test_smallest_passing_variant_becomes_current():
    out = select(VARIANTS, GateConfig(max_accuracy_drop_pp=1.0))
    assert out["passed"] == ["dynamic", "fp16", "fp32"]
    assert out["deploy"] == ["dynamic", "fp16", "fp32"] and out["current"] == "dynamic"
    assert out["verdicts"]["int8"] == {"drop_pp": 2.0, "passed": False}


def test_requested_variants_restrict_deployment():
    out = select(VARIANTS, GateConfig(max_accuracy_drop_pp=5.0, deploy_variants=("int8", "fp32")))
    assert out["deploy"] == ["int8", "fp32"] and out["current"] == "int8"


def test_no_deployable_variant_stops_the_run():
    with pytest.raises(GateError, match="no deployable variant"):
        select(VARIANTS, GateConfig(max_accuracy_drop_pp=1.0, deploy_variants=("int8",)))
