"""The report's history section: the last runs' accuracy, size and device p50 as a trend, champion marked.

Device figures come from the rollouts of each run (``tasks.fleet.history.device_trend`` turns the rollout
records into ``run_id -> (median device p50 of the current variant, labels)``); manifests of schema 2, which
still carried a ``devices`` list, keep working.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from html import escape
from typing import Any

from tasks.core.manifest import RunManifest
from tasks.report.charts import chart, figures, fmt, size

HISTORY_RUNS = 10
DeviceTrend = Mapping[str, tuple[float | None, str | None]]  # run id -> (median device p50 ms, "host/native")


def _manifest_devices(manifest: RunManifest) -> tuple[float | None, str | None]:
    """Median p50 of each device's current variant and the labels, from a schema-2 manifest's ``devices``."""
    p50s = [d.models[d.current_variant].latency_ms.get("p50") for d in manifest.devices
            if d.current_variant in d.models]
    p50s = [p for p in p50s if isinstance(p, int | float)]
    labels = sorted({d.label for d in manifest.devices})
    return (statistics.median(p50s) if p50s else None), ("/".join(labels) or None)


def history_row(manifest: RunManifest, devices: DeviceTrend | None = None) -> dict[str, Any]:
    """One run's trend figures: its manifest, plus its rollouts' device figures when ``devices`` has the run
    (else the manifest's own ``devices`` list, schema 2)."""
    current = manifest.current
    variant = manifest.variants.get(current) if current is not None else None
    fp32 = manifest.variants.get("fp32")
    p50, label = (devices or {}).get(manifest.run_id, (None, None))
    if p50 is None:
        p50, label = _manifest_devices(manifest)
    champion = manifest.gate.champion if manifest.gate is not None else None
    return {
        "run_id": manifest.run_id,
        "created_at": manifest.created_at,
        "blessed": manifest.gate is not None and manifest.gate.blessed,  # schema 1 recorded no verdict
        "fp32_accuracy": fp32.accuracy if fp32 is not None else None,
        "current": current,
        "current_accuracy": variant.accuracy if variant is not None else None,
        "current_size_bytes": variant.size_bytes if variant is not None else None,
        "device_p50_ms": p50,
        "device_label": label,
        "champion": champion.run_id if champion is not None else None,
    }


def comparable(a: RunManifest, b: RunManifest) -> bool:
    """Runs are compared only on the same dataset source and classes (the rule the champion follows too)."""
    return a.source == b.source and a.classes == b.classes


def history_rows(previous: list[RunManifest], manifest: RunManifest, devices: DeviceTrend | None = None
                 ) -> list[dict[str, Any]]:
    """This run first, then up to HISTORY_RUNS-1 earlier finished runs on the same data (newest first).

    ``devices``: run id -> (median device p50 of the current variant, labels), from the rollout records
    (``tasks.fleet.history.device_trend``); runs it lacks fall back to their manifest's ``devices`` list."""
    earlier = [m for m in previous if m.run_id != manifest.run_id and comparable(m, manifest)]
    return [history_row(m, devices) for m in [manifest, *earlier[: HISTORY_RUNS - 1]]]


def _champion_id(rows: list[dict[str, Any]]) -> str | None:
    """The champion this run was compared with (from its gate), else the newest earlier blessed run."""
    if rows and rows[0].get("champion"):
        return rows[0]["champion"]
    return next((r["run_id"] for r in rows[1:] if r["blessed"]), None)


def history_section(rows: list[dict[str, Any]]) -> str:
    if len(rows) < 2:
        return ""
    champion = _champion_id(rows)
    oldest_first = list(reversed(rows))
    names = [str(i + 1 - len(rows)) if i + 1 < len(rows) else "this" for i in range(len(rows))]
    acc = [None if r["fp32_accuracy"] is None else r["fp32_accuracy"] * 100 for r in oldest_first]
    p50 = [r["device_p50_ms"] for r in oldest_first]
    charts = [("fp32 test accuracy, last runs (%)", chart("fp32 accuracy (%)", names, acc, "%")),
              ("Device p50 of the current variant (ms)", chart("device p50 (ms)", names, p50, "ms"))]
    head = ("run", "created", "blessed", "fp32 accuracy", "current", "current accuracy", "current size",
            "device p50 ms", "label")
    body = []
    for r in rows:
        mark = " (champion)" if r["run_id"] == champion else ""
        left = [f"{r['run_id']}{mark}", r["created_at"]]
        cells = [f'<td class="l">{escape(str(c))}</td>' for c in left]
        cells += [f"<td>{'yes' if r['blessed'] else 'no'}</td>",
                  f"<td>{fmt(r['fp32_accuracy'], '.2f', 100, ' %')}</td>",
                  f'<td class="l">{escape(str(r["current"] or "—"))}</td>',
                  f"<td>{fmt(r['current_accuracy'], '.2f', 100, ' %')}</td>",
                  f"<td>{size(r['current_size_bytes'])}</td>", f"<td>{fmt(r['device_p50_ms'], '.3f')}</td>",
                  f'<td class="l">{escape(str(r["device_label"] or "—"))}</td>']
        body.append(f"<tr>{''.join(cells)}</tr>")
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    return (f"<h2>History</h2>{figures(charts)}<table><tr>{th}</tr>{''.join(body)}</table>"
            "<p>Device p50 is labelled per run: host/emulated timings are not Pi figures.</p>")
