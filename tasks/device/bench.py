#!/usr/bin/env python3
"""On-device benchmark for TFLite models; shipped inside every release and run by the device's own venv.

STANDALONE: imports only the standard library, numpy and ai_edge_litert (the hash-locked device runtime,
tasks/device/runtime.lock). Never import anything from the project here.

    python bench.py --model int8.tflite [--model fp16.tflite ...] --sample sample.npz \
        --warmup 10 --runs 100 --threads 4 --label native \
        [--delegate /usr/lib/libedgetpu.so.1 --delegate-option device=usb ...]

Each model is measured in a fresh child process of this script (``--worker``), so ``peak_rss_mb`` is that
model's own peak (interpreter + numpy + the sample), not a maximum accumulated over the models measured
before it. ``--in-process`` skips the children; peak RSS is then cumulative and flagged as such.

``--smoke`` is the deploy's gate on the device (run in the staging dir before the switch, and through
``current`` after it), in a child process so a crashing interpreter is reported, not fatal. Per model:
load, one invoke on the first sample image, output of batch 1 wide enough for the sample's labels, every
value finite. Exit 0 when all pass, 3 otherwise (the JSON still says which model failed and why).

``--delegate`` is ``xnnpack`` (LiteRT's built-in default) or the absolute path of an external delegate library,
loaded with the runtime's ``load_delegate(path, options)`` and passed as ``experimental_delegates``. A delegate
that does not load or cannot be applied to a model is exit 4 with ``{"error": {"kind": "delegate", ...}}`` on
stdout: never a silent fallback to the CPU. Every result records the delegate that ran and how many
partitions it took (0: it claimed no op, so the CPU ran everything).

Stdout carries exactly one JSON document; all progress goes to stderr. File descriptor 1 is redirected to
stderr while working so that native libraries printing to stdout cannot corrupt the JSON.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = 1
EXIT_SMOKE_FAILED = 3
EXIT_DELEGATE = 4  # the requested delegate did not load or apply: the error JSON says which and why
XNNPACK = "xnnpack"  # LiteRT's built-in default CPU delegate; anything else is an external library's path
LITERT_PACKAGES = (("ai_edge_litert.interpreter", "ai-edge-litert"),)  # the runtime lock's; no fallback


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def load_interpreter_module() -> tuple[Any, str, str]:
    """Return (interpreter module, package name, version) of ai-edge-litert."""
    errors = []
    for module, package in LITERT_PACKAGES:
        try:
            mod = __import__(module, fromlist=["Interpreter"])
        except ImportError as exc:
            errors.append(f"{module}: {exc}")
            continue
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return mod, package, version
    raise SystemExit(
        f"bench.py: no TFLite runtime importable ({'; '.join(errors)}); "
        "install ai-edge-litert into this python's venv (provisioning installs tasks/device/runtime.lock)"
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def device_facts(threads: int) -> dict[str, Any]:
    os_name = next(
        (
            line.split("=", 1)[1].strip().strip('"')
            for line in _read("/etc/os-release").splitlines()
            if line.startswith("PRETTY_NAME=")
        ),
        platform.platform(),
    )
    cpuinfo: dict[str, str] = {}
    for line in _read("/proc/cpuinfo").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in cpuinfo:
            cpuinfo[key.strip()] = value.strip()
    board = cpuinfo.get("Model") or _read("/proc/device-tree/model").strip("\x00\n ") or None
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    _, package, version = load_interpreter_module()
    return {
        "arch": platform.machine(),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "litert": {"package": package, "version": version},
        "numpy": np.__version__,
        "cpu_model": cpuinfo.get("model name") or cpuinfo.get("Hardware") or board or platform.processor(),
        "board": board,
        "cpu_count": os.cpu_count(),
        "mem_total_mb": round(mem_kb / 1024, 1),
        "threads": threads,
    }


def load_sample(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        if "x" not in data or "y" not in data:
            raise SystemExit(
                f"bench.py: {path} must hold arrays 'x' (NHWC images) and 'y' (labels); "
                f"found {sorted(data.files)}"
            )
        x, y = data["x"].astype(np.float32), data["y"]
    if y.ndim == 2:  # one-hot labels
        y = y.argmax(axis=1)
    if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
        raise SystemExit(
            f"bench.py: {path}: need x of shape (N,H,W,C) and N labels, got x{x.shape} y{y.shape}"
        )
    return x, y.astype(np.int64)


def prepare_input(image: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Cast one (1,H,W,C) float image to the model's input dtype, quantizing integer inputs."""
    dtype = detail["dtype"]
    if dtype in (np.int8, np.uint8, np.int16):
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        q = np.round(image / (scale or 1.0) + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return image.astype(dtype)


def predict(output: np.ndarray, detail: dict[str, Any]) -> int:
    scale, zero_point = detail["quantization"]
    values = output.astype(np.float32).reshape(-1)
    if scale:
        values = (values - zero_point) * scale
    if values.size == 1:  # single sigmoid unit: binary classifier
        return int(values[0] > 0.5)
    return int(values.argmax())


# --- delegates ------------------------------------------------------------------------------------------------
class DelegateError(Exception):
    """The requested delegate did not load, or could not be applied to a model. Never fall back to the CPU."""


def delegate_spec(delegate: str, options: dict[str, str]) -> dict[str, Any]:
    """What the results record about the requested delegate."""
    if delegate == XNNPACK:
        return {"name": XNNPACK, "builtin": True}
    return {"name": os.path.basename(delegate), "builtin": False, "path": delegate, "options": dict(options)}


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"


def load_external_delegate(mod: Any, path: str, options: dict[str, str]) -> Any:
    """``load_delegate(path, options)``, with every way it fails turned into one DelegateError naming the path:
    OSError (missing file, not a shared library), AttributeError (no tflite_plugin_* symbols: not a
    delegate), ValueError (the delegate's create function refused, with its own message)."""
    try:
        return mod.load_delegate(path, options)
    except Exception as exc:  # noqa: BLE001 - each loader failure means the same thing: no such delegate
        raise DelegateError(
            f"delegate {path} failed to load ({_why(exc)}); no CPU fallback: install the library on the "
            "device or fix the group's delegate / delegate_options"
        ) from None


def node_count(interp: Any) -> int | None:
    """Nodes of the primary subgraph, or None when this runtime does not say.

    A delegate appends one kernel node per partition it claims (the nodes it replaced stay listed, outside the
    execution plan), so the growth of this count is the number of partitions a delegate took. The Python API
    exposes neither the execution plan nor which nodes a partition replaced, so how many ops each partition
    holds is not recorded; 0 partitions does prove the delegate took no op. ``partitions`` of an external
    delegate is read right after it is applied; a delegate LiteRT re-applies during allocation (after the batch
    resize) would show up in ``fallback_partitions`` too, so that figure is an upper bound."""
    num_nodes = getattr(getattr(interp, "_interpreter", None), "NumNodes", None)
    try:
        return int(num_nodes()) if num_nodes else None
    except Exception:  # noqa: BLE001 - a runtime without this counter: unknown, not an error
        return None


def _grew(before: int | None, after: int | None) -> int | None:
    return after - before if before is not None and after is not None else None


def open_interpreter(model: str, threads: int, spec: dict[str, Any]) -> tuple[Any, dict[str, Any], float]:
    """An interpreter with the requested delegate, input batch 1, tensors allocated; what the delegates took;
    the load time in ms (delegate library, model, delegation, allocation).

    An external delegate is applied when the interpreter is built; LiteRT's default XNNPACK is applied lazily
    by ``allocate_tensors`` to the nodes left over (the ``fallback_partitions`` of an external delegate)."""
    mod, _, _ = load_interpreter_module()
    model_nodes = None if spec["builtin"] else node_count(mod.Interpreter(model_path=model, num_threads=threads))
    start = time.perf_counter()
    delegates = [] if spec["builtin"] else [load_external_delegate(mod, spec["path"], spec["options"])]
    try:
        interp = mod.Interpreter(model_path=model, num_threads=threads, experimental_delegates=delegates or None)
    except Exception as exc:
        if not delegates:
            raise
        raise DelegateError(
            f"delegate {spec['path']} loaded but failed to apply to {model} ({_why(exc)}); no CPU fallback"
        ) from None
    applied = node_count(interp)
    model_nodes = applied if model_nodes is None else model_nodes
    inp = interp.get_input_details()[0]
    if list(inp["shape_signature"][:1]) == [-1] or inp["shape"][0] != 1:
        interp.resize_tensor_input(inp["index"], [1, *inp["shape"][1:]])
    interp.allocate_tensors()
    load_ms = (time.perf_counter() - start) * 1000
    final = node_count(interp)
    info = {**spec, "model_nodes": model_nodes}
    if delegates:
        info.update(partitions=_grew(model_nodes, applied), fallback_partitions=_grew(applied, final))
        if info["partitions"] == 0:
            log(f"WARNING: delegate {spec['path']} loaded but claimed no op of {Path(model).name}: the CPU ran it")
    else:
        info.update(partitions=_grew(model_nodes, final), fallback_partitions=None)
    return interp, info, load_ms


# --- measuring ------------------------------------------------------------------------------------------------
def bench_model(
    model: str, x: np.ndarray, y: np.ndarray, warmup: int, runs: int, threads: int, spec: dict[str, Any]
) -> dict[str, Any]:
    interp, delegate, load_ms = open_interpreter(model, threads, spec)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if tuple(inp["shape"][1:]) != x.shape[1:]:
        raise SystemExit(
            f"bench.py: {model} expects input {tuple(inp['shape'])}, sample images are "
            f"{x.shape[1:]}: rebuild sample.npz at the model's input size"
        )
    inputs = [prepare_input(x[i : i + 1], inp) for i in range(len(x))]

    def once(i: int) -> np.ndarray:
        interp.set_tensor(inp["index"], inputs[i % len(inputs)])
        interp.invoke()
        return interp.get_tensor(out["index"])

    for i in range(warmup):
        once(i)
    timings = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        once(i)
        timings[i] = (time.perf_counter_ns() - t0) / 1e6
    correct = sum(predict(once(i), out) == int(y[i]) for i in range(len(inputs)))
    p50, p90, p95, p99 = (float(v) for v in np.percentile(timings, [50, 90, 95, 99]))
    return {
        "load_ms": round(load_ms, 3),
        "latency_ms": {
            "p50": round(p50, 4),
            "p90": round(p90, 4),
            "p95": round(p95, 4),
            "p99": round(p99, 4),
            "mean": round(float(timings.mean()), 4),
            "std": round(float(timings.std()), 4),
        },
        "runs": runs,
        "warmup": warmup,
        "peak_rss_mb": round(peak_rss_mb(), 2),
        "accuracy": correct / len(inputs),
        "samples": len(inputs),
        "input_dtype": np.dtype(inp["dtype"]).name,
        "size_bytes": os.path.getsize(model),
        "threads": threads,
        "delegate": delegate,
    }


def smoke_model(model: str, x: np.ndarray, y: np.ndarray, threads: int, spec: dict[str, Any]) -> dict[str, Any]:
    """Load, one invoke on x[0]; fail (``ok`` False, with the reason) on a bad shape or non-finite output."""
    interp, _, _ = open_interpreter(model, threads, spec)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if tuple(inp["shape"][1:]) != x.shape[1:]:
        return {"ok": False, "why": f"input {tuple(int(d) for d in inp['shape'])} does not fit sample {x.shape[1:]}"}
    interp.set_tensor(inp["index"], prepare_input(x[:1], inp))
    interp.invoke()
    raw = interp.get_tensor(out["index"])
    scale, zero_point = out["quantization"]
    values = raw.astype(np.float32) if not scale else (raw.astype(np.float32) - zero_point) * scale
    shape, classes = [int(d) for d in raw.shape], int(y.max()) + 1
    width = int(np.prod(shape[1:])) if len(shape) > 1 else 0
    if not shape or shape[0] != 1 or not (width >= classes or (width == 1 and classes <= 2)):
        return {"ok": False, "why": f"output shape {shape}: expected (1, >= {classes}) for the sample's labels"}
    if not np.isfinite(values).all():
        return {"ok": False, "why": f"output has {int((~np.isfinite(values)).sum())} non-finite value(s)",
                "output_shape": shape}
    return {"ok": True, "output_shape": shape}


def smoke_all(models: list[str], sample: str, threads: int, spec: dict[str, Any]) -> dict[str, Any]:
    """In the worker: smoke-test each model; an exception fails that model only, a DelegateError all of them."""
    x, y = load_sample(sample)
    results: dict[str, Any] = {}
    for model in models:
        try:
            results[Path(model).stem] = smoke_model(model, x, y, threads, spec)
        except DelegateError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the runtime raises, the model is not deployable
            results[Path(model).stem] = {"ok": False, "why": f"the model did not load or run: {exc}"}
    return results


def run_smoke(args: argparse.Namespace) -> dict[str, Any]:
    """Smoke-test the models in one child process, so a crashing interpreter (a signal) is a failed test."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--smoke", "--sample", args.sample,
           *runtime_args(args)]
    for model in args.model:
        cmd += ["--model", model]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, check=False, timeout=args.timeout)
    raise_worker_delegate_error(proc)
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        why = f"the model did not load or run ({how} while smoke testing {', '.join(args.model)}); see stderr"
        return {Path(m).stem: {"ok": False, "why": why} for m in args.model}
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for stem, r in results.items():
        log(f"smoke {stem}: {'ok' if r['ok'] else 'FAILED: ' + r['why']}")
    return results


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def runtime_args(args: argparse.Namespace) -> list[str]:
    """The runtime options of this run, passed on to a worker child."""
    options = [a for k, v in args.delegate_options.items() for a in ("--delegate-option", f"{k}={v}")]
    return ["--threads", str(args.threads), "--delegate", args.delegate, *options]


def raise_worker_delegate_error(proc: subprocess.CompletedProcess[str]) -> None:
    """A worker that exited EXIT_DELEGATE printed the error document: raise its message here."""
    if proc.returncode == EXIT_DELEGATE:
        try:
            message = json.loads(proc.stdout.strip().splitlines()[-1])["error"]["message"]
        except (IndexError, ValueError, KeyError, TypeError):
            message = "the delegate failed in a worker process (no error document; see stderr)"
        raise DelegateError(message)


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Measure args.model[0] in a child process and return its parsed result."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--model",
        args.model[0],
        "--sample",
        args.sample,
        "--warmup",
        str(args.warmup),
        "--runs",
        str(args.runs),
        *runtime_args(args),
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, check=False)
    raise_worker_delegate_error(proc)
    if proc.returncode != 0:
        raise SystemExit(
            f"bench.py: measuring {args.model[0]} failed (exit {proc.returncode}); see stderr above"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="a .tflite file; repeat for several")
    p.add_argument("--sample", required=True, help="npz with x (N,H,W,C float 0..255) and y (labels)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument(
        "--label", default="host", choices=("native", "emulated", "host"), help="how timings were taken"
    )
    p.add_argument(
        "--in-process", action="store_true", help="no child per model; peak RSS becomes cumulative"
    )
    p.add_argument("--smoke", action="store_true", help="load + one invoke + finite output check, per model")
    p.add_argument("--timeout", type=float, default=120, help="smoke test timeout (s)")
    p.add_argument("--delegate", default=XNNPACK, help=f"{XNNPACK!r} or an external delegate library's absolute path")
    p.add_argument("--delegate-option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to load_delegate(path, options); repeat for several")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        p.error("need --runs >= 1, --warmup >= 0, --threads >= 1")
    if args.delegate != XNNPACK and not os.path.isabs(args.delegate):
        p.error(f"--delegate {args.delegate!r}: use {XNNPACK!r} or an absolute path to a delegate library")
    pairs = [o.partition("=") for o in args.delegate_option]
    if any(not k or not sep for k, sep, _ in pairs) or (pairs and args.delegate == XNNPACK):
        p.error("--delegate-option takes KEY=VALUE, and only with an external --delegate library")
    args.delegate_options = {k: v for k, _, v in pairs}
    missing = [m for m in [*args.model, args.sample] if not os.path.isfile(m)]
    if missing:
        p.error(f"missing file(s): {', '.join(missing)} (cwd {os.getcwd()})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    json_out = os.fdopen(os.dup(1), "w")  # the real stdout, kept for the final JSON only
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    spec = delegate_spec(args.delegate, args.delegate_options)
    try:
        doc, code = run(args, spec)
    except DelegateError as exc:
        if not args.worker:
            log(f"ERROR: {exc}")
        doc, code = {"schema": SCHEMA, "error": {"kind": "delegate", "message": str(exc), "delegate": spec},
                     "delegate": spec, "threads": args.threads}, EXIT_DELEGATE
    json_out.write(json.dumps(doc, sort_keys=True) + "\n")
    json_out.flush()
    return code


def run(args: argparse.Namespace, spec: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The mode the arguments ask for: (the JSON document to print, the exit code)."""
    if args.smoke:
        if args.worker:
            return smoke_all(args.model, args.sample, args.threads, spec), 0
        results = run_smoke(args)
        doc = {"schema": SCHEMA, "smoke": results, "delegate": spec, "threads": args.threads}
        return doc, 0 if all(r["ok"] for r in results.values()) else EXIT_SMOKE_FAILED
    if args.worker:
        x, y = load_sample(args.sample)
        return bench_model(args.model[0], x, y, args.warmup, args.runs, args.threads, spec), 0
    return run_benchmark(args, spec), 0


def run_benchmark(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Measure every model (each in its own child unless --in-process); the whole document."""
    facts = device_facts(args.threads)
    log(
        f"{facts['arch']} {facts['cpu_model']} python {facts['python']} "
        f"{facts['litert']['package']} {facts['litert']['version']}"
    )
    results: dict[str, Any] = {}
    x = y = None
    for model in args.model:
        stem = Path(model).stem
        log(f"{stem}: warmup {args.warmup}, runs {args.runs}, threads {args.threads}, delegate {spec['name']}")
        if args.in_process:
            if x is None:
                x, y = load_sample(args.sample)
            results[stem] = bench_model(model, x, y, args.warmup, args.runs, args.threads, spec)
        else:
            sub = argparse.Namespace(**{**vars(args), "model": [model]})
            results[stem] = run_worker(sub)
        r = results[stem]
        log(
            f"{stem}: p50 {r['latency_ms']['p50']:.3f} ms, p99 {r['latency_ms']['p99']:.3f} ms, "
            f"accuracy {r['accuracy']:.3f}, peak RSS {r['peak_rss_mb']:.1f} MB"
        )
    return {
        "schema": SCHEMA,
        "device": facts,
        "label": args.label,
        "rss_scope": "cumulative" if args.in_process else "per_model",
        "threads": args.threads,
        "delegate": spec,
        "results": results,
    }


if __name__ == "__main__":
    sys.exit(main())
