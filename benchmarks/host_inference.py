"""Host inference figures for one run's TFLite variants (LiteRT on THIS machine, labelled ``host``).

    eval $(.venv/bin/python -m scripts.devstack env --shell)
    .venv/bin/python benchmarks/host_inference.py [run_id|latest] [--runs 200] [--batch 64]

Prints batch-1 latency percentiles and batched throughput per variant. These are host numbers: on an x86
host int8 is typically no faster than fp32, and none of this predicts a Raspberry Pi; the on-device
benchmark (``devices/<name>.json``, label ``native`` on a real Pi) is the figure that counts.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import numpy as np

    from tasks.core import keys
    from tasks.core.storage import ArtifactStore
    from tasks.registry import runs
    from tasks.steps.evaluate import TFLiteModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="latest")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    store = ArtifactStore.from_env()
    manifest = runs.resolve(store, args.run)
    run_id = manifest.run_id
    sample = np.load(io.BytesIO(store.get_bytes(keys.evaluation(run_id, "sample.npz"))))
    x = sample["x"]
    print(f"run {run_id} on {platform.machine()} ({platform.processor() or 'cpu'}), threads={args.threads}, "
          f"label=host")
    print(f"{'variant':<9}{'KB':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'img/s @' + str(args.batch):>12}")
    for mode in sorted(manifest.variants, key=lambda m: manifest.variants[m].size_bytes):
        blob = store.get_bytes(keys.tflite(run_id, mode))
        model = TFLiteModel(blob, threads=args.threads)
        batch = np.resize(x, (args.batch, *x.shape[1:]))  # repeat the sample up to one batch
        model.predict(batch, args.batch)  # warm-up at this batch size
        times = []
        for _ in range(10):
            start = time.perf_counter()
            model.predict(batch, args.batch)
            times.append(time.perf_counter() - start)
        lat = model.latency_ms(x[0], warmup=20, runs=args.runs)
        print(f"{mode:<9}{len(blob) / 1024:>8.1f}{lat['p50']:>9.3f}{lat['p90']:>9.3f}{lat['p99']:>9.3f}"
              f"{args.batch / float(np.median(times)):>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
