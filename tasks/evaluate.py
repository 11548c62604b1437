"""Evaluate step: Keras baseline and every TFLite variant on the TEST split, with LiteRT.

Accuracy is computed with batched invokes (the seed invoked once per image). Latency is measured
separately at batch 1, warm-up first, and labelled ``host``: it says nothing about a Pi's speed.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks import data, keys
from tasks.results import EvaluateResult, QuantizeResult, TrainResult, VariantMetrics
from tasks.step import StepContext, timed

log = logging.getLogger(__name__)


class TFLiteModel:
    """A LiteRT interpreter that takes raw float pixels and handles int8/uint8 input quantisation."""

    def __init__(self, content: bytes, threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=content, num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = 0

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = [batch, *self.input["shape"][1:]]
            self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            self._batch = batch

    def _quantize(self, x: Any) -> Any:
        import numpy as np

        dtype = self.input["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def predict(self, x: Any, batch_size: int) -> Any:
        """Class indices for a float array of images, ``batch_size`` images per invoke (last batch padded)."""
        import numpy as np

        self._resize(batch_size)
        preds = []
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            pad = batch_size - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            self.interpreter.set_tensor(self.input["index"], self._quantize(chunk))
            self.interpreter.invoke()
            out = self.interpreter.get_tensor(self.output["index"])
            preds.append(out[: len(out) - pad].argmax(-1))  # argmax is unchanged by a positive output scale
        return np.concatenate(preds)

    def latency_ms(self, image: Any, warmup: int, runs: int) -> dict[str, float]:
        import numpy as np

        self._resize(1)
        tensor = self._quantize(image[None])
        for _ in range(warmup):
            self.interpreter.set_tensor(self.input["index"], tensor)
            self.interpreter.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.interpreter.set_tensor(self.input["index"], tensor)
            self.interpreter.invoke()
            self.interpreter.get_tensor(self.output["index"])
            times.append((time.perf_counter() - start) * 1000)
        p50, p90, p99 = (float(v) for v in np.percentile(times, [50, 90, 99]))
        return {"p50": p50, "p90": p90, "p99": p99, "mean": float(np.mean(times)), "runs": runs}


def _keras_accuracy(path: Path, x: Any, y: Any, batch_size: int) -> float:
    import keras

    model = keras.models.load_model(path, compile=False)
    return float((model.predict(x, batch_size=batch_size, verbose=0).argmax(-1) == y).mean())


def evaluate_variants(blobs: dict[str, bytes], x: Any, y: Any, ecfg: Any) -> dict[str, dict[str, Any]]:
    """Accuracy, size, host latency and agreement with fp32 for each TFLite variant."""
    results, preds = {}, {}
    for mode, blob in blobs.items():
        with timed(f"evaluate {mode} on {len(x)} test images"):
            model = TFLiteModel(blob)
            preds[mode] = model.predict(x, ecfg.batch_size)
            results[mode] = {
                "accuracy": float((preds[mode] == y).mean()),
                "size_bytes": len(blob),
                "latency_ms": model.latency_ms(x[0], ecfg.latency_warmup, ecfg.latency_runs),
                "latency_label": "host",
                "input_dtype": str(model.input["dtype"].__name__),
            }
    base = preds.get("fp32")
    for mode in results:
        results[mode]["agreement"] = float((preds[mode] == base).mean()) if base is not None else None
    return results


def run(ctx: StepContext) -> EvaluateResult:
    import numpy as np

    cfg = ctx.config
    trained = TrainResult.from_xcom(ctx.need("train"))
    quantized = {q.mode: q for q in (QuantizeResult.from_xcom(r) for r in ctx.need("quantized"))}
    splits = data.load_splits(cfg.data, ctx.store)
    x, y = data.to_arrays(splits.test)
    with tempfile.TemporaryDirectory() as tmp:
        keras_path = ctx.store.fetch(trained.model, Path(tmp) / "model.keras")
        keras_result = {"accuracy": _keras_accuracy(keras_path, x, y, cfg.evaluate.batch_size),
                        "size_bytes": keras_path.stat().st_size}
        blobs = {mode: ctx.store.fetch(q.tflite, Path(tmp) / f"{mode}.tflite").read_bytes()
                 for mode, q in sorted(quantized.items())}
    variants = evaluate_variants(blobs, x, y, cfg.evaluate)
    n = min(cfg.bench.sample_size, len(x))
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x[:n].astype(np.float32), y=y[:n].astype(np.int64))
    sample = ctx.store.put_bytes(keys.evaluation(ctx.run_id, "sample.npz"), buf.getvalue())
    metrics = {"test_examples": len(x), "keras": keras_result, "variants": variants,
               "classes": list(splits.class_names), "latency_label": "host"}
    art = ctx.store.put_json(keys.evaluation(ctx.run_id), metrics)
    for mode, m in variants.items():
        log.info("%-8s acc=%.4f size=%d p50=%.3fms agreement=%.4f", mode, m["accuracy"], m["size_bytes"],
                 m["latency_ms"]["p50"], m["agreement"] or 0)
    summary = {mode: VariantMetrics(accuracy=m["accuracy"], size_bytes=m["size_bytes"],
                                    gzip_bytes=quantized[mode].gzip_bytes, agreement=m["agreement"],
                                    latency_p50_ms=m["latency_ms"]["p50"], latency_p90_ms=m["latency_ms"]["p90"],
                                    latency_label=m["latency_label"]) for mode, m in variants.items()}
    return EvaluateResult(metrics=ctx.store.ref(art), sample=ctx.store.ref(sample), test_examples=len(x),
                          keras_accuracy=keras_result["accuracy"], variants=summary,
                          tflite={mode: q.tflite for mode, q in quantized.items()})
