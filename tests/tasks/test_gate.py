"""Gate decisions on crafted per-image tables: floor, significant vs noise drops, champion better/worse/absent."""

from __future__ import annotations

import json

import pytest

from tasks.core.config import GateConfig
from tasks.core.results import ArtifactRef, GateVerdict
from tasks.ml.stats import mcnemar_exact, paired
from tasks.steps.gate import EvalTable, decide

REF = ArtifactRef("s3://artifacts/runs/r/x", "ab" * 32, 1, "v1")
SIZES = {"fp32": 400, "fp16": 200, "dynamic": 120, "int8": 100, "qat_int8": 98}


def _preds(n: int, wrong: range | set[int]) -> list[int]:
    """Predictions for n images all labelled 0: class 1 (wrong) at the given indices."""
    return [1 if i in wrong else 0 for i in range(n)]


def _table(n: int, wrong: dict[str, range | set[int]], champion_wrong: range | None = None) -> EvalTable:
    preds = {mode: _preds(n, w) for mode, w in wrong.items()}
    return EvalTable([0] * n, preds, {m: SIZES[m] for m in preds}, {m: SIZES[m] // 2 for m in preds},
                     "champ-run" if champion_wrong is not None else None,
                     _preds(n, champion_wrong) if champion_wrong is not None else None)


def _decide(table: EvalTable, **gate) -> GateVerdict:
    return decide(table, GateConfig(**gate), {m: REF for m in table.predictions}, REF)


def test_mcnemar_exact_matches_the_binomial():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(3, 3) == 1.0
    pr = paired([0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 1, 0])
    assert (pr.only_a, pr.only_b, pr.drop_pp) == (1, 1, 0.0)


def test_floor_blocks_a_useless_model_even_when_variants_agree():
    """The reported bug: every variant at chance, no drop vs fp32, shipped anyway."""
    v = _decide(_table(100, {"fp32": range(90), "int8": range(90)}), min_accuracy=0.9)
    assert not v.blessed and v.deploy == () and v.current is None
    assert "below the floor gate.min_accuracy=0.9000" in v.reasons[0] and "not good enough" in v.reasons[0]
    assert "devices keep their current release" in v.reasons[-1]


def test_significant_drop_fails_and_smallest_passing_is_current():
    v = _decide(_table(500, {"fp32": range(10), "dynamic": range(12), "int8": range(30)}))
    assert v.blessed and v.deploy == ("dynamic", "fp32") and v.current == "dynamic"
    int8 = v.variants["int8"]
    assert not int8.passed and int8.significant and int8.drop_pp == 4.0
    assert (int8.only_fp32_right, int8.only_variant_right) == (20, 0) and int8.p_value < 1e-5
    assert "and significant" in int8.reasons[0]
    assert v.variants["dynamic"].passed and "within max" in v.variants["dynamic"].reasons[0]
    assert v.variants["int8"].gzip_bytes == 50 and "failed: ['int8']" in v.reasons[-1]


def test_insignificant_drop_over_the_max_is_reported_as_noise_and_passes():
    v = _decide(_table(100, {"fp32": range(2), "int8": range(5)}))  # 3 pp, 3 discordant images
    int8 = v.variants["int8"]
    assert int8.passed and not int8.significant and int8.drop_pp == 3.0
    assert int8.p_value == pytest.approx(0.25)
    assert "NOT significant at 0.05" in int8.reasons[0] and "within test-set noise" in int8.reasons[0]
    assert v.current == "int8"


def test_variant_under_the_floor_fails_even_if_the_drop_is_noise():
    v = _decide(_table(100, {"fp32": range(8), "int8": range(11)}), min_accuracy=0.9)
    assert v.variants["fp32"].passed and not v.variants["int8"].passed
    assert v.deploy == ("fp32",) and "below the floor" in v.variants["int8"].reasons[0]


def test_champion_significantly_better_blocks_the_challenger():
    v = _decide(_table(300, {"fp32": range(30), "int8": range(30)}, champion_wrong=range(5)))
    assert not v.blessed and v.champion is not None and v.champion.significantly_worse
    assert v.champion.run_id == "champ-run" and v.champion.drop_pp == pytest.approx(8.3333, abs=1e-3)
    assert "significantly worse than the champion" in v.reasons[0]


def test_champion_worse_or_equal_lets_the_challenger_ship():
    worse = _decide(_table(300, {"fp32": range(5)}, champion_wrong=range(30)))
    assert worse.blessed and not worse.champion.significantly_worse and worse.champion.drop_pp < 0
    noise = _decide(_table(300, {"fp32": range(8)}, champion_wrong=range(5)))  # 1 pp worse, p = 0.25
    assert noise.blessed and "not significantly worse" in noise.reasons[0]


def test_first_run_has_no_champion():
    v = _decide(_table(50, {"fp32": range(1)}))
    assert v.blessed and v.champion is None and v.reasons[0].startswith("no champion")


def test_requested_variants_restrict_and_nothing_deployable_is_a_verdict_not_an_error():
    table = _table(500, {"fp32": range(10), "int8": range(30), "fp16": range(10)})
    assert _decide(table, deploy_variants=("int8", "fp16")).deploy == ("fp16",)
    v = _decide(table, deploy_variants=("int8",))
    assert not v.blessed and any("no deployable variant passed" in r for r in v.reasons)


def test_missing_fp32_is_not_blessed():
    v = _decide(_table(10, {"int8": range(1)}))
    assert not v.blessed and "needs the fp32 baseline" in v.reasons[0]


def test_verdict_round_trips_with_champion():
    v = _decide(_table(300, {"fp32": range(5), "int8": range(6)}, champion_wrong=range(30)))
    again = GateVerdict.from_xcom(json.loads(json.dumps(v.to_xcom())))
    assert again == v and again.champion.run_id == "champ-run"


def test_int8_rescue_ships_qat_int8_in_place_of_a_failed_int8():
    table = _table(500, {"fp32": range(10), "int8": range(30), "qat_int8": range(11)})
    v = decide(table, GateConfig(deploy_variants=("int8", "fp32")), {m: REF for m in table.predictions}, REF,
               int8_rescue=True)
    assert v.blessed and v.deploy == ("qat_int8", "fp32") and v.current == "qat_int8"
    assert v.rescued == {"int8": "qat_int8"} and any(r.startswith("int8 rescue: post-training int8 failed")
                                                      for r in v.reasons)
    off = decide(table, GateConfig(deploy_variants=("int8", "fp32")), {m: REF for m in table.predictions}, REF)
    assert off.deploy == ("fp32",) and off.rescued == {}


def test_int8_rescue_needs_qat_int8_in_the_modes():
    from tasks.core.config import load_config
    from tasks.core.exceptions import ConfigError

    with pytest.raises(ConfigError, match="int8_rescue needs both"):
        load_config("demo", {"quantize.modes": ["fp32", "int8"], "quantize.int8_rescue": True})


def test_metrics_table_reads_a_skipped_champion():
    from tasks.core.metrics import EvalMetrics

    fp32 = {"accuracy": 1.0, "size_bytes": 10, "gzip_bytes": 8, "input_dtype": "float32", "agreement": 1.0,
            "latency_ms": {"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0, "runs": 1}}
    metrics = {"test_examples": 2, "keras": {"accuracy": 1.0, "size_bytes": 10}, "classes": ["a", "b"],
               "labels": [0, 0], "predictions": {"fp32": [0, 0]}, "variants": {"fp32": fp32},
               "champion": {"skipped": "gate.compare_champion is off: not compared"}}
    v = _decide(EvalTable.from_metrics(EvalMetrics.from_dict(metrics)))
    assert v.blessed and v.reasons[0] == "gate.compare_champion is off: not compared" and v.champion is None
