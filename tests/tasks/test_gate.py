"""Gate decisions on crafted per-image tables: evidence, floor, non-inferiority vs fp32 and the champion, classes.

Every loophole of the old gate ("not significant" = pass) has a case here: 5 test images, one class, a variant that
collapses one class while the mean holds, a challenger the data cannot show to be as good as the champion.
"""

from __future__ import annotations

import json

import pytest

from tasks.core.config import GateConfig
from tasks.core.results import ArtifactRef
from tasks.core.verdict import Finding, GateOutcome, GateVerdict
from tasks.ml.stats import mcnemar_exact, paired
from tasks.steps.gate import EvalTable, decide

REF = ArtifactRef("s3://artifacts/runs/r/x", "ab" * 32, 1, "v1")
SIZES = {"fp32": 400, "fp16": 200, "dynamic": 120, "int8": 100, "qat_int8": 98}
CLASSES = ("cat", "dog")


def _labels(n: int) -> list[int]:
    return [i % 2 for i in range(n)]  # cat, dog, cat, dog, ...


def _preds(n: int, wrong: range | set[int]) -> list[int]:
    """The labels, flipped to the other class at the given indices."""
    return [1 - y if i in wrong else y for i, y in enumerate(_labels(n))]


def _table(n: int, wrong: dict[str, range | set[int]], champion_wrong: range | set[int] | None = None,
           classes: tuple[str, ...] = CLASSES) -> EvalTable:
    preds = {mode: _preds(n, w) for mode, w in wrong.items()}
    return EvalTable(_labels(n), preds, {m: SIZES[m] for m in preds}, {m: SIZES[m] // 2 for m in preds},
                     "champ-run" if champion_wrong is not None else None,
                     _preds(n, champion_wrong) if champion_wrong is not None else None, classes=classes)


def _decide(table: EvalTable, **gate) -> GateVerdict:
    gate.setdefault("min_test_per_class", 2)
    return decide(table, GateConfig(**gate), {m: REF for m in table.predictions}, REF)


def test_mcnemar_exact_matches_the_binomial():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(3, 3) == 1.0
    pr = paired([0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 1, 0])
    assert (pr.only_a, pr.only_b, pr.drop_pp) == (1, 1, 0.0)


def test_five_test_images_are_too_little_evidence():
    """The old gate blessed an int8 20 pp worse than fp32 on 5 images as 'within test-set noise'."""
    v = _decide(_table(5, {"fp32": set(), "int8": {0}}), min_test_per_class=20)
    assert not v.blessed and v.outcome == GateOutcome.NOT_BLESSED and v.deploy == ()
    assert "too little evidence" in v.reasons[0] and "'cat': 3" in v.reasons[0] and "'dog': 2" in v.reasons[0]
    alone = _decide(_table(5, {"fp32": set(), "int8": {0}}), min_test_per_class=1)  # even without the minimum
    assert alone.variants["int8"].finding == Finding.FAIL and "int8" not in alone.deploy


def test_a_one_class_test_split_is_refused():
    """A constant predictor scores 100 % on a one-class test split: that proves nothing."""
    table = EvalTable([0] * 50, {"fp32": [0] * 50}, {"fp32": 400}, {"fp32": 200}, classes=("cat", "dog"))
    v = _decide(table)
    assert not v.blessed and "'dog': 0" in v.reasons[0]
    single = EvalTable([0] * 50, {"fp32": [0] * 50}, {"fp32": 400}, {"fp32": 200}, classes=("cat",))
    assert "accuracy on one class proves nothing" in _decide(single).reasons[0]


def test_floor_blocks_a_useless_model_even_when_variants_agree():
    v = _decide(_table(100, {"fp32": range(50), "int8": range(50)}), min_accuracy=0.9)
    assert not v.blessed and v.deploy == () and v.current is None and v.outcome == GateOutcome.NOT_BLESSED
    assert "below the floor gate.min_accuracy=0.9000" in v.reasons[0] and "not good enough" in v.reasons[0]
    assert "devices keep their current release" in v.reasons[-1]


def test_non_inferior_variants_ship_and_the_smallest_is_current():
    v = _decide(_table(2000, {"fp32": range(20), "dynamic": range(20), "int8": range(80)}))
    assert v.blessed and v.outcome == GateOutcome.BLESSED
    assert v.deploy == ("dynamic", "fp32") and v.current == "dynamic"
    dyn, int8 = v.variants["dynamic"], v.variants["int8"]
    assert dyn.finding == Finding.PASS and dyn.drop_upper_pp is not None and dyn.drop_upper_pp <= 1.0
    assert int8.finding == Finding.FAIL and int8.drop_pp == 3.0 and "over the 1.0 pp margin" in int8.reasons[0]
    assert (int8.only_fp32_right, int8.only_variant_right) == (60, 0)
    assert "not shipped: {'int8': 'fail'}" in v.reasons[-1]


def test_a_drop_the_data_cannot_bound_is_inconclusive_with_the_images_needed():
    """540 images, 6 vs 3 discordant: 0.56 pp observed, but the 95 % bound is 1.65 pp > the 1 pp margin."""
    table = _table(540, {"fp32": set(), "int8": set(range(6))})
    table.predictions["fp32"] = _preds(540, set(range(6, 9)))
    v = _decide(table)
    int8 = v.variants["int8"]
    assert int8.finding == Finding.INCONCLUSIVE and not int8.passed
    assert int8.drop_pp == pytest.approx(0.5556, abs=1e-3) and int8.drop_upper_pp > 1.0
    assert int8.examples_needed and int8.examples_needed > 540
    assert "cannot rule out more than 1.0 pp" in int8.reasons[0] and str(int8.examples_needed) in int8.reasons[0]
    assert v.blessed and v.deploy == ("fp32",)  # fp32 itself ships
    only_int8 = _decide(table, deploy_variants=("int8",))
    assert not only_int8.blessed and only_int8.outcome == GateOutcome.INCONCLUSIVE
    assert "INCONCLUSIVE" in only_int8.reasons[-1]


def test_a_variant_that_collapses_one_class_fails_and_names_it():
    """The mean holds (fp32 misses 20 cats, int8 misses 20 dogs), but int8 loses 20 % of the dogs."""
    cats = {i for i in range(200) if i % 2 == 0}
    dogs = {i for i in range(200) if i % 2 == 1}
    table = _table(200, {"fp32": set(list(cats)[:20]), "int8": set(list(dogs)[:20])})
    v = _decide(table, max_accuracy_drop_pp=10, max_class_drop_pp=10)
    int8 = v.variants["int8"]
    assert int8.drop_pp == 0.0 and int8.finding == Finding.FAIL
    assert any("class 'dog' recall drop +20.00 pp" in r and "over the 10" in r for r in int8.reasons)
    assert "int8" not in v.deploy


def test_champion_clearly_better_blocks_the_challenger():
    v = _decide(_table(300, {"fp32": range(30), "int8": range(30)}, champion_wrong=range(5)))
    assert not v.blessed and v.outcome == GateOutcome.NOT_BLESSED
    assert v.champion is not None and v.champion.significantly_worse and v.champion.finding == Finding.FAIL
    assert v.champion.run_id == "champ-run" and v.champion.drop_pp == pytest.approx(8.3333, abs=1e-3)
    assert "fp32 vs champion champ-run" in v.reasons[0] and "over the 1.0 pp margin" in v.reasons[0]


def test_a_challenger_the_data_cannot_show_as_good_as_the_champion_is_inconclusive():
    noise = _decide(_table(300, {"fp32": range(8)}, champion_wrong=range(5)))  # 1 pp worse, 3 discordant
    assert not noise.blessed and noise.outcome == GateOutcome.INCONCLUSIVE
    assert noise.champion.finding == Finding.INCONCLUSIVE and "cannot rule out" in noise.reasons[0]


def test_a_challenger_as_good_as_or_better_than_the_champion_ships():
    better = _decide(_table(300, {"fp32": range(5)}, champion_wrong=range(30)))
    assert better.blessed and better.champion.finding == Finding.PASS and better.champion.drop_pp < 0
    same = _decide(_table(2000, {"fp32": range(8)}, champion_wrong=range(8)))
    assert same.blessed and same.champion.drop_upper_pp <= 1.0


def test_first_run_has_no_champion():
    v = _decide(_table(50, {"fp32": range(1)}))
    assert v.blessed and v.champion is None and v.reasons[0].startswith("no champion")


def test_requested_variants_restrict_and_nothing_deployable_is_a_verdict_not_an_error():
    table = _table(2000, {"fp32": range(10), "int8": range(80), "fp16": range(10)})
    assert _decide(table, deploy_variants=("int8", "fp16")).deploy == ("fp16",)
    v = _decide(table, deploy_variants=("int8",))
    assert not v.blessed and v.outcome == GateOutcome.NOT_BLESSED
    assert any("no requested variant passed" in r for r in v.reasons)


def test_missing_fp32_is_not_blessed():
    v = _decide(_table(10, {"int8": range(1)}))
    assert not v.blessed and "needs the fp32 baseline" in v.reasons[0]


def test_verdict_round_trips_with_champion():
    v = _decide(_table(300, {"fp32": range(5), "int8": range(6)}, champion_wrong=range(30)))
    again = GateVerdict.from_xcom(json.loads(json.dumps(v.to_xcom())))
    assert again == v and again.champion.run_id == "champ-run"


def test_a_verdict_written_before_the_bounds_existed_still_decodes():
    old = {"blessed": False, "deploy": [], "current": None, "reasons": ["x"], "tflite": {},
           "sample": REF.to_xcom(), "max_accuracy_drop_pp": 1.0,
           "variants": {"fp32": {"passed": True, "drop_pp": 0.0}}}
    v = GateVerdict.from_xcom(old)
    assert v.outcome == "" and v.variants["fp32"].finding == "" and v.summary().startswith("NOT_BLESSED")


def test_int8_rescue_ships_qat_int8_in_place_of_a_failed_int8():
    table = _table(2000, {"fp32": range(10), "int8": range(80), "qat_int8": range(10)})
    v = decide(table, GateConfig(deploy_variants=("int8", "fp32"), min_test_per_class=2),
               {m: REF for m in table.predictions}, REF, int8_rescue=True)
    assert v.blessed and v.deploy == ("qat_int8", "fp32") and v.current == "qat_int8"
    assert v.rescued == {"int8": "qat_int8"} and any(r.startswith("int8 rescue: post-training int8 did not pass")
                                                      for r in v.reasons)
    off = decide(table, GateConfig(deploy_variants=("int8", "fp32"), min_test_per_class=2),
                 {m: REF for m in table.predictions}, REF)
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
    metrics = {"test_examples": 20, "keras": {"accuracy": 1.0, "size_bytes": 10}, "classes": ["a", "b"],
               "labels": [0, 1] * 10, "predictions": {"fp32": [0, 1] * 10}, "variants": {"fp32": fp32},
               "champion": {"skipped": "gate.compare_champion is off: not compared"}}
    v = _decide(EvalTable.from_metrics(EvalMetrics.from_dict(metrics)))
    assert v.blessed and v.reasons[0] == "gate.compare_champion is off: not compared" and v.champion is None
