"""What reproducible training costs, and what still moves: the real train step, run several ways.

    eval $(.venv/bin/python -m scripts.devstack env --shell)
    .venv/bin/python -m tasks.cli seed-digits --uri s3://datasets/digits
    .venv/bin/python benchmarks/determinism.py [--profile demo] [--set train.epochs=15 ...]

Trains the profile (one training at a time, each in its own process) as:
  det-a, det-b   train.deterministic=true, twice  -> are the test predictions identical, image by image?
  free-a, free-b train.deterministic=false, twice -> how far two unseeded-kernel runs drift
  onednn-off     deterministic, TF_ENABLE_ONEDNN_OPTS=0 -> the kernel library, as a stand-in for another CPU
and prints, per run, fit and wall seconds and test accuracy, then the differences. Then the quantize step builds
each tfmot mode (``--quantize``, default pruned and qat_int8: fine-tuned, so seeded like training) twice from
det-a's model, each in its own process, and prints whether the two variant files are the same (sha256).
It prints figures only.
"""

from __future__ import annotations

import argparse
import uuid

from _training import TrainRun, predictions, quantize, train

RUNS = (  # name, train.deterministic, extra environment
    ("det-a", True, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("det-b", True, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("free-a", False, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("free-b", False, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
    ("onednn-off", True, {"TF_ENABLE_ONEDNN_OPTS": "0"}),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="SECTION.KEY=VALUE override")
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--quantize", default="pruned,qat_int8", help="tfmot modes to build twice ('' = none)")
    args = parser.parse_args()
    wanted = [r for r in RUNS if not args.only or r[0] in args.only.split(",")]
    tag = uuid.uuid4().hex[:6]
    preds, labels, runs = {}, None, {}
    print(f"{'run':<11} {'det':<5} {'oneDNN':<6} {'fit_s':>7} {'wall_s':>7} {'test_acc':>9} {'epochs':>6}")
    for name, det, env in wanted:
        sets = [*args.sets, f"train.deterministic={str(det).lower()}"]
        run = runs[name] = train(f"bench-det-{tag}-{name}", args.profile, sets, env)
        preds[name], labels = predictions(run, args.profile, sets)
        acc = float((preds[name] == labels).mean())
        print(f"{name:<11} {str(det):<5} {env['TF_ENABLE_ONEDNN_OPTS']:<6} {run.fit_s:>7.1f} {run.wall_s:>7.1f} "
              f"{acc:>9.4f} {run.result['epochs_run']:>6}  (manifest deterministic={run.result['deterministic']})",
              flush=True)
    print(f"\ntest images: {len(labels) if labels is not None else 0}")
    for a, b in (("det-a", "det-b"), ("free-a", "free-b"), ("det-a", "onednn-off"), ("det-a", "free-a")):
        if a in preds and b in preds:
            differ = int((preds[a] != preds[b]).sum())
            delta = 100 * (float((preds[b] == labels).mean()) - float((preds[a] == labels).mean()))
            print(f"{a} vs {b}: {differ} test prediction(s) differ; accuracy {delta:+.2f} pp")
    if "det-a" in runs and args.quantize:
        _quantize_twice(runs["det-a"], [m for m in args.quantize.split(",") if m], args.profile, args.sets)
    return 0


def _quantize_twice(trained: TrainRun, modes: list[str], profile: str, sets: list[str]) -> None:
    """Build each mode twice from one trained model (as two quantize steps would) and compare the files."""
    print(f"\nquantize {trained.run_id}'s model twice per mode:")
    for mode in modes:
        a, b = (quantize(f"{trained.run_id}-q{i}", trained, mode, profile, sets) for i in (1, 2))
        same = a["tflite"]["sha256"] == b["tflite"]["sha256"]
        print(f"{mode:<9} {'same file' if same else 'DIFFERENT files'}: {a['tflite']['sha256'][:12]} vs "
              f"{b['tflite']['sha256'][:12]} ({a['tflite']['size_bytes']} / {b['tflite']['size_bytes']} bytes)",
              flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
