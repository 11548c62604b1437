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

from tasks.report.charts import chart, figures, fmt, size

HISTORY_RUNS = 10
DeviceTrend = Mapping[str, tuple[float | None, str | None]]  # run id -> (median device p50 ms, "host/native")


def _manifest_devices(manifest: dict[str, Any]) -> tuple[float | None, str | None]:
    """Median p50 of each device's current variant and the labels, from a schema-2 manifest's ``devices``."""
    p50s = [((d.get("models") or {}).get(d.get("current_variant")) or {}).get("latency_ms", {}).get("p50")
            for d in manifest.get("devices") or []]
    p50s = [p for p in p50s if isinstance(p, int | float)]
    labels = sorted({str(d.get("label")) for d in manifest.get("devices") or []})
    return (statistics.median(p50s) if p50s else None), ("/".join(labels) or None)


def history_row(manifest: dict[str, Any], devices: DeviceTrend | None = None) -> dict[str, Any]:
    """One run's trend figures: its manifest, plus its rollouts' device figures when ``devices`` has the run
    (else the manifest's own ``devices`` list, schema 2)."""
    gate = manifest.get("gate") or {}
    current = gate.get("current")
    variant = (manifest.get("variants") or {}).get(current) or {}
    p50, label = (devices or {}).get(str(manifest.get("run_id")), (None, None))
    if p50 is None:
        p50, label = _manifest_devices(manifest)
    return {
        "run_id": manifest.get("run_id"),
        "created_at": manifest.get("created_at"),
        "blessed": bool(gate.get("blessed")),
        "fp32_accuracy": ((manifest.get("variants") or {}).get("fp32") or {}).get("accuracy"),
        "current": current,
        "current_accuracy": variant.get("accuracy"),
        "current_size_bytes": variant.get("size_bytes"),
        "device_p50_ms": p50,
        "device_label": label,
        "champion": (gate.get("champion") or {}).get("run_id"),
    }


def comparable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Runs are compared only on the same dataset source and classes (the rule the champion follows too)."""
    da, db = a.get("dataset") or {}, b.get("dataset") or {}
    return da.get("source") == db.get("source") and da.get("classes") == db.get("classes")


def history_rows(previous: list[dict[str, Any]], manifest: dict[str, Any], devices: DeviceTrend | None = None
                 ) -> list[dict[str, Any]]:
    """This run first, then up to HISTORY_RUNS-1 earlier finished runs on the same data (newest first).

    ``devices``: run id -> (median device p50 of the current variant, labels), from the rollout records
    (``tasks.fleet.history.device_trend``); runs it lacks fall back to their manifest's ``devices`` list."""
    earlier = [m for m in previous if m.get("run_id") != manifest.get("run_id") and comparable(m, manifest)]
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
