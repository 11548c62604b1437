"""Quantization figures of one run's variants: accuracy, paired drop vs fp32, sizes, host latency, agreement.

    eval $(.venv/bin/python -m scripts.devstack env --shell)
    .venv/bin/python benchmarks/quantization.py RUN_ID

Reads ``runs/<id>/eval/metrics.json`` (per-image predictions kept by the evaluate step) and, when present,
``eval/gate.json``. The drop's p-value is the exact McNemar test on the same test images; ``bound pp`` is the
one-sided upper confidence bound of the drop (Tango, at the gate's level) that the gate compares with its margin,
and ``gate`` its finding (pass / inconclusive / fail) from ``eval/gate.json``. Latency is the
evaluate step's batch-1 figure on the BUILD HOST (label ``host``): it says nothing about a Raspberry Pi.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from tasks.core import keys
    from tasks.core.keys import safe_run_id
    from tasks.core.metrics import EvalMetrics
    from tasks.core.storage import ArtifactStore
    from tasks.core.verdict import GateVerdict
    from tasks.ml.stats import drop_bound, paired

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    args = parser.parse_args()
    store = ArtifactStore.from_env()
    run_id = safe_run_id(args.run_id)
    metrics = EvalMetrics.from_dict(store.get_json(keys.evaluation(run_id)), keys.evaluation(run_id))
    variants, labels, preds = metrics.variants, list(metrics.labels), metrics.predictions
    base = variants["fp32"]
    gate_key = keys.evaluation(run_id, "gate.json")
    gate = GateVerdict.from_xcom(store.get_json(gate_key)) if store.exists(gate_key) else None
    level = 1 - (gate.significance if gate else 0.05)
    print(f"run {run_id}: {metrics.test_examples} test images; latency = batch-1 p50 on the build host "
          f"(label {metrics.latency_label}), not a Pi figure")
    head = (f"{'variant':<9}{'acc %':>7}{'drop pp':>8}{'bound pp':>9}{'gate':>14}{'McNemar p':>10}"
            f"{'only32/only':>12}{'KB':>8}{'x fp32':>7}{'gzip KB':>8}{'x fp32':>7}{'host p50 ms':>12}{'agree %':>8}")
    print(head)
    for mode in sorted(variants, key=lambda m: variants[m].size_bytes, reverse=True):
        v = variants[mode]
        pr = paired(labels, list(preds["fp32"]), list(preds[mode]))
        gz, base_gz = v.gzip_bytes or 0, base.gzip_bytes or 0
        bound = drop_bound(pr, level).upper_pp
        finding = (gate.variants[mode].finding or "?") if gate and mode in gate.variants else "-"
        print(f"{mode:<9}{v.accuracy * 100:>7.2f}{pr.drop_pp:>8.2f}{bound:>9.2f}{finding:>14}{pr.p_value:>10.3g}"
              f"{f'{pr.only_a}/{pr.only_b}':>12}{v.size_bytes / 1024:>8.1f}"
              f"{base.size_bytes / v.size_bytes:>7.2f}{gz / 1024:>8.1f}{(base_gz / gz if gz else 0):>7.2f}"
              f"{v.latency_ms.p50:>12.3f}{(v.agreement or 0) * 100:>8.2f}")
    champ = metrics.champion
    if champ and champ.run_id is not None and champ.accuracy is not None:
        print(f"champion {champ.run_id}: fp32 {champ.accuracy * 100:.2f} % on this run's test images")
    if gate is not None:
        print(f"gate: {(gate.outcome or ('blessed' if gate.blessed else 'not_blessed')).upper()} at "
              f"{level:.0%}; margin {gate.max_accuracy_drop_pp} pp; deploy {list(gate.deploy)}; current {gate.current}")
        for reason in gate.reasons:
            print(f"  - {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
