"""Evaluate step: Keras baseline and every TFLite variant on the TEST split, with LiteRT.

Accuracy is computed with batched invokes (the seed invoked once per image). Latency is measured
separately at batch 1, warm-up first, and labelled ``host``: it says nothing about a Pi's speed.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks.core import keys
from tasks.core.memory import max_image_pixels
from tasks.core.metrics import EvalMetrics
from tasks.core.results import EvaluateResult, QuantizeResult, TrainResult, VariantMetrics
from tasks.core.step import StepContext, timed
from tasks.ml import data

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
        return self.scores(x, batch_size)[0]

    def scores(self, x: Any, batch_size: int) -> tuple[Any, Any]:
        """(class indices, top probabilities) for a float array of images; the probabilities are what
        edgeops-serve reports as ``confidence`` for the same output (``serve_model._probabilities``)."""
        import numpy as np

        from tasks.device.serve_model import _probabilities

        self._resize(batch_size)
        preds, confidences = [], []
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            pad = batch_size - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            self.interpreter.set_tensor(self.input["index"], self._quantize(chunk))
            self.interpreter.invoke()
            out = self.interpreter.get_tensor(self.output["index"])
            out = out[: len(out) - pad]
            preds.append(out.argmax(-1))  # argmax is unchanged by a positive output scale
            confidences.extend(float(_probabilities(row, self.output).max()) for row in out)
        return np.concatenate(preds), np.asarray(confidences)

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


def _reference_accuracy(trained: TrainResult, path: Path, x: Any, y: Any, batch_size: int) -> float:
    """The run's model before conversion: the .keras file, or a SavedModel source's serving signature."""
    if trained.model_format == "saved_model":
        from tasks.ml import saved_model

        return saved_model.accuracy(saved_model.unpack(path, path.parent / "saved_model"), x, y, batch_size)
    import keras

    model = keras.models.load_model(path, compile=False)
    return float((model.predict(x, batch_size=batch_size, verbose=0).argmax(-1) == y).mean())


def evaluate_variants(blobs: dict[str, bytes], x: Any, y: Any,
                      ecfg: Any) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]]]:
    """Accuracy, size, gzip size, host latency and agreement with fp32 per variant, plus per-image predictions."""
    from tasks.ml.convert import gzip_size

    results, preds = {}, {}
    for mode, blob in blobs.items():
        with timed(f"evaluate {mode} on {len(x)} test images"):
            model = TFLiteModel(blob)
            preds[mode], confidences = model.scores(x, ecfg.batch_size)
            results[mode] = {
                "confidence_bins": confidence_histogram(confidences),
                "accuracy": float((preds[mode] == y).mean()),
                "size_bytes": len(blob),
                "gzip_bytes": gzip_size(blob),
                "latency_ms": model.latency_ms(x[0], ecfg.latency_warmup, ecfg.latency_runs),
                "latency_label": "host",
                "input_dtype": str(model.input["dtype"].__name__),
            }
    base = preds.get("fp32")
    for mode in results:
        results[mode]["agreement"] = float((preds[mode] == base).mean()) if base is not None else None
    return results, {mode: [int(v) for v in p] for mode, p in preds.items()}


def confidence_histogram(confidences: Any) -> list[int]:
    """Top probabilities binned as edgeops-serve bins production traffic: the drift baseline."""
    from tasks.device.serve_records import CONFIDENCE_BINS, confidence_bin

    bins = [0] * CONFIDENCE_BINS
    for c in confidences:
        bins[confidence_bin(float(c))] += 1
    return bins


def per_class(y: Any, pred: Any, num_classes: int) -> dict[str, Any]:
    """Recall per class and the confusion matrix ([true][predicted]) of one variant on the test split."""
    import numpy as np

    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    support = confusion.sum(axis=1)
    recall = [float(confusion[c, c] / support[c]) if support[c] else 0.0 for c in range(num_classes)]
    return {"class_recall": recall, "confusion": confusion.tolist()}


def evaluate_champion(ctx: StepContext, classes: list[str], tmp: Path) -> dict[str, Any] | None:
    """The blessed champion's fp32 on THIS run's test images (re-read at the champion's input size)."""
    from tasks.fleet.history import fleet_runs
    from tasks.registry import champion as champ

    if not ctx.config.gate.compare_champion:
        log.info("gate.compare_champion is off: the candidate is not compared with the blessed model")
        return {"skipped": "gate.compare_champion is off: not compared with the currently blessed model"}
    found = champ.find(ctx.store, ctx.config.data.source, classes, exclude_run=ctx.run_id,
                       fleet_runs=fleet_runs(ctx.store))
    if found is None:
        log.info("no champion: no earlier blessed run on %s with classes %s", ctx.config.data.source, classes)
        return None
    blob = champ.fetch_fp32(ctx.store, found, tmp)
    dcfg = dataclasses.replace(ctx.config.data, image_size=found.image_size, channels=found.channels)
    pixels = max_image_pixels(ctx.config.execution.memory_limit, dcfg.channels)
    x, y = data.to_arrays(data.load_splits(dcfg, ctx.store, pixels).test)  # same seeded split, champion's input size
    with timed(f"evaluate champion {found.run_id} fp32 on {len(x)} test images"):
        preds = TFLiteModel(blob).predict(x, ctx.config.evaluate.batch_size)
    return {"run_id": found.run_id, "fp32": found.fp32.to_xcom(), "accuracy": float((preds == y).mean()),
            "predictions": [int(v) for v in preds]}


def run(ctx: StepContext) -> EvaluateResult:
    """Inputs: ``{"train": TrainResult, "quantized": [QuantizeResult, ...]}``; returns an EvaluateResult."""
    import numpy as np

    cfg = ctx.config
    trained = TrainResult.from_xcom(ctx.need("train"))
    quantized = [QuantizeResult.from_xcom(q) for q in ctx.need("quantized")]
    refs = {q.mode: q.tflite for q in sorted(quantized, key=lambda q: q.mode)}
    splits = data.load_splits(cfg.data, ctx.store, cfg.max_image_pixels)
    x, y = data.to_arrays(splits.test)
    classes = list(splits.class_names)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = ctx.store.fetch(trained.model, Path(tmp) / trained.model.name)
        keras_result = {"accuracy": _reference_accuracy(trained, model_path, x, y, cfg.evaluate.batch_size),
                        "size_bytes": model_path.stat().st_size, "format": trained.model_format}
        blobs = {mode: ctx.store.fetch(ref, Path(tmp) / f"{mode}.tflite").read_bytes() for mode, ref in refs.items()}
        variants, preds = evaluate_variants(blobs, x, y, cfg.evaluate)
        champion = evaluate_champion(ctx, classes, Path(tmp))
    n = min(cfg.bench.sample_size, len(x))
    for mode in variants:  # the host's accuracy on exactly the images shipped to devices (the canary compares)
        variants[mode]["sample_accuracy"] = float((np.asarray(preds[mode][:n]) == y[:n]).mean())
        variants[mode].update(per_class(y, np.asarray(preds[mode]), len(classes)))
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x[:n].astype(np.float32), y=y[:n].astype(np.int64))
    sample = ctx.store.put_bytes(keys.evaluation(ctx.run_id, "sample.npz"), buf.getvalue())
    metrics = EvalMetrics.from_dict({"test_examples": len(x), "keras": keras_result, "variants": variants,
                                     "classes": classes, "latency_label": "host", "labels": [int(v) for v in y],
                                     "predictions": preds, "champion": champion}, "evaluate's metrics")
    art = ctx.store.put_json(keys.evaluation(ctx.run_id), metrics.to_dict())
    for mode, m in variants.items():
        log.info("%-8s acc=%.4f size=%d gzip=%d p50=%.3fms agreement=%.4f", mode, m["accuracy"], m["size_bytes"],
                 m["gzip_bytes"], m["latency_ms"]["p50"], m["agreement"] or 0)
    result = EvaluateResult(
        metrics=ctx.store.ref(art), sample=ctx.store.ref(sample), test_examples=len(x),
        keras_accuracy=keras_result["accuracy"],
        variants={mode: VariantMetrics(m["accuracy"], m["size_bytes"], m["gzip_bytes"], m["agreement"],
                                       m["latency_ms"]["p50"], m["latency_ms"]["p90"],
                                       sample_accuracy=m["sample_accuracy"], class_recall=m["class_recall"],
                                       confusion=m["confusion"]) for mode, m in variants.items()},
        tflite=refs, champion_run=(champion or {}).get("run_id"), champion_accuracy=(champion or {}).get("accuracy"))
    return result
