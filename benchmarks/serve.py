"""edgeops-serve figures on THIS machine (label ``host``: an x86 dev box, not a device claim).

    .venv/bin/python benchmarks/serve.py [--models tiny,mobilenet96,mobilenet224] [--threads 1] \
        [--clients 2] [--seconds 4] [--swaps 4]

Per model: bench.py's raw invoke rate (batch 1, same threads, in-process; the faster of a run before and one
after the service's, so a busy moment cannot flatter the ratio) vs edgeops-serve's throughput over the
Unix socket with ``--clients`` keep-alive clients sending .npy bodies; then p99 client latency during hot swaps
under continuous load (``current`` switched between two releases of the model; the window is 1 s from each
switch) vs steady state, and the failed requests (must be 0). Models: ``tiny`` (8x8x3 conv, the tests' model:
all overhead), ``mobilenet96`` (MobileNetV2 alpha 0.35 at 96x96) and ``mobilenet224`` (alpha 1.0 at 224x224, the
cost class of a real Pi classifier); untrained, random uint8 frames as the bodies.
Run it alone: the clients, the service and bench.py share this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCH = Path(__file__).resolve().parents[1] / "tasks" / "device" / "bench.py"
MOBILENETS = {"mobilenet96": (96, 0.35), "mobilenet224": (224, 1.0)}  # input size, width multiplier


def build(name: str, work: Path) -> dict[str, Path]:
    """fp32 TFLite + sample.npz of one benchmark model."""
    import numpy as np

    if name == "tiny":
        from tests.helpers import tiny_tflite_release

        files = tiny_tflite_release(work, samples=16)
        return {"fp32.tflite": files["fp32.tflite"], "sample.npz": files["sample.npz"]}
    import contextlib
    import io

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    size, alpha = MOBILENETS[name]
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, classes=3)
    with contextlib.redirect_stdout(io.StringIO()):  # the converter lists every captured tensor on stdout
        (work / "fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    x = np.random.default_rng(0).integers(0, 256, (16, size, size, 3)).astype(np.float32)
    np.savez(work / "sample.npz", x=x, y=np.zeros(16, np.int64))
    return {"fp32.tflite": work / "fp32.tflite", "sample.npz": work / "sample.npz"}


def raw_rate(files: dict[str, Path], threads: int, runs: int) -> float:
    out = subprocess.run([sys.executable, str(BENCH), "--model", str(files["fp32.tflite"]), "--sample",
                          str(files["sample.npz"]), "--runs", str(runs), "--warmup", "20", "--threads",
                          str(threads), "--in-process"], capture_output=True, text=True, check=True).stdout
    return 1000.0 / json.loads(out)["results"]["fp32"]["latency_ms"]["mean"]


def load(serve: object, x: object, seconds: float, clients: int, events: list[tuple[float, float, int]],
         stop: threading.Event | None = None) -> None:
    """``clients`` threads, each a keep-alive Unix-socket client, for ``seconds``: (start, latency s, status)."""
    def one(i: int) -> None:
        client, end, n = serve.client(unix=True), time.monotonic() + seconds, 0  # type: ignore[attr-defined]
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                status = client.classify_npy(x[(i + n) % len(x)])[0]  # type: ignore[index]
            except Exception:  # noqa: BLE001 - a failed request is counted, not fatal
                status, client = 0, serve.client(unix=True)  # type: ignore[attr-defined]
            events.append((t0, time.monotonic() - t0, status))
            n += 1
        client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def p99(values: list[float]) -> float:
    import numpy as np

    return float(np.percentile(values, 99)) * 1000 if values else float("nan")


def measure(name: str, args: argparse.Namespace, work: Path) -> None:
    import numpy as np

    from tests.serve_helpers import Serve, make_release, switch

    files = build(name, work / "payload")
    rate = raw_rate(files, args.threads, args.runs)
    root = work / "root"
    for release in ("a", "b"):
        make_release(root, release, files, "fp32")
    switch(root, "a")
    serve = Serve(root, "--threads", str(args.threads), "--poll-s", "0.05", "--sample-reservoir", "0",
                  "--sample-threshold", "0")
    x = np.load(files["sample.npz"])["x"].astype(np.uint8)  # camera frames: uint8 bodies
    try:
        load(serve, x, 1.0, args.clients, [])  # warm-up
        steady: list[tuple[float, float, int]] = []
        load(serve, x, args.seconds, args.clients, steady)
        swapping: list[tuple[float, float, int]] = []
        switches: list[float] = []

        def swapper() -> None:
            for i in range(args.swaps):
                time.sleep(args.seconds / (args.swaps + 1))
                switches.append(time.monotonic())
                switch(root, "b" if i % 2 == 0 else "a")

        t = threading.Thread(target=swapper)
        t.start()
        load(serve, x, args.seconds, args.clients, swapping)
        t.join()
        health = serve.wait_for(lambda h: h["swaps"] == args.swaps)
    finally:
        serve.stop()
    rate = max(rate, raw_rate(files, args.threads, args.runs))  # before and after: the faster, a conservative ratio
    ok = [e for e in steady if e[2] == 200]
    throughput = len(ok) / args.seconds
    in_swap = [lat for t0, lat, s in swapping if s == 200 and any(0 <= t0 - w < 1.0 for w in switches)]
    failed = sum(1 for e in steady + swapping if e[2] != 200)
    print(f"{name:<10}{rate:>10.0f}{throughput:>10.0f}{100 * throughput / rate:>7.0f}%"
          f"{p99([e[1] for e in ok]):>12.2f}{p99(in_swap):>12.2f}{health['swaps']:>7}{failed:>8}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,mobilenet96,mobilenet224")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--swaps", type=int, default=4)
    p.add_argument("--runs", type=int, default=300, help="bench.py --runs for the raw invoke rate")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"label=host ({platform.machine()}, {os.cpu_count()} cpus; not a device claim), threads={args.threads}, "
          f"clients={args.clients} over the Unix socket, {args.seconds:.0f} s per phase, {args.swaps} swaps, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'model':<10}{'raw/s':>10}{'serve/s':>10}{'ratio':>8}{'p99 ms':>12}{'p99 swap':>12}{'swaps':>7}"
          f"{'failed':>8}")
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix=f"edgeops-serve-bench-{name}-") as tmp:
            (Path(tmp) / "payload").mkdir()
            measure(name, args, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
