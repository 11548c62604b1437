"""Render a run's manifest as one self-contained HTML page and upload it next to the run's artifacts.

The page has no external resources: inline CSS and charts as base64 PNGs (matplotlib Agg, imported lazily).
Every piece of text that comes from the manifest goes through ``html.escape``.
Timings labelled ``host`` or ``emulated`` were taken on x86 and are never presented as Raspberry Pi speeds.
"""

from __future__ import annotations

from html import escape
from typing import Any

from tasks.core import keys
from tasks.core.modes import QUANT_MODES
from tasks.core.storage import Artifact, ArtifactStore
from tasks.report.charts import (
    CONTENT_TYPE,
    LABEL_NOTE,
    chart,
    device_table,
    figures,
    fmt,
    meta_list,
    num,
    page,
    pass_fail,
    reasons_list,
    size,
)
from tasks.report.history import history_section

__all__ = ["CONTENT_TYPE", "Artifact", "render_html", "run"]


def _ordered_variants(variants: dict[str, Any]) -> list[str]:
    known = [m for m in QUANT_MODES if m in variants]
    return known + sorted(m for m in variants if m not in QUANT_MODES)


def _charts(variants: dict[str, Any], names: list[str]) -> str:
    if not names:
        return "<p>No variants were evaluated in this run.</p>"
    acc_pct = [None if (a := num(variants[m].get("accuracy"))) is None else a * 100 for m in names]
    sizes = [num(variants[m].get("size_bytes")) for m in names]
    big = max((s for s in sizes if s is not None), default=0) >= 2**20
    unit, div = ("MB", 2**20) if big else ("KB", 2**10)
    p50 = [num(variants[m].get("latency_p50_ms")) for m in names]
    p90 = [num(variants[m].get("latency_p90_ms")) for m in names]
    size_vals = [None if s is None else s / div for s in sizes]
    charts = [
        ("Accuracy by variant", chart("Accuracy by variant", names, acc_pct, "accuracy (%)")),
        (f"Model size by variant ({unit})", chart(f"Model size ({unit})", names, size_vals, unit)),
        ("Host latency, not device: p50 bar, p90 whisker (ms)",
         chart("Host latency, not device (p50, p90 whisker)", names, p50, "ms", upper=p90)),
    ]
    return figures(charts)


def _pass_cell(verdict: dict[str, Any] | None) -> str:
    return pass_fail(bool(verdict.get("passed"))) if verdict else "—"


def _variants_table(manifest: dict[str, Any], names: list[str]) -> str:
    variants = manifest.get("variants") or {}
    gate = manifest.get("gate") or {}
    current, deploy = gate.get("current"), set(gate.get("deploy") or [])
    base = num((variants.get("fp32") or {}).get("accuracy"))
    head = ("variant", "accuracy", "drop vs fp32", "p (paired)", "size", "gzip size", "p50 ms", "p90 ms",
            "agreement", "gate", "deployed")
    rows = []
    for m in names:
        v, verdict = variants[m], variants[m].get("gate") or {}
        acc = num(v.get("accuracy"))
        drop = "—" if acc is None or base is None else f"{(base - acc) * 100:+.2f} pp"
        cells = [f'<td class="l">{escape(m)}{" (current)" if m == current else ""}</td>',
                 f"<td>{fmt(acc, '.2f', 100, ' %')}</td>", f"<td>{drop}</td>",
                 f"<td>{fmt(verdict.get('p_value'), '.3g')}</td>", f"<td>{size(v.get('size_bytes'))}</td>",
                 f"<td>{size(v.get('gzip_bytes'))}</td>",
                 f"<td>{fmt(v.get('latency_p50_ms'), '.3f')}</td>", f"<td>{fmt(v.get('latency_p90_ms'), '.3f')}</td>",
                 f"<td>{fmt(v.get('agreement'), '.2f', 100, ' %')}</td>", f"<td>{_pass_cell(verdict)}</td>",
                 f"<td>{'yes' if m in deploy else 'no'}</td>"]
        rows.append(f'<tr{" class=current" if m == current else ""}>{"".join(cells)}</tr>')
    keras = num((manifest.get("evaluation") or {}).get("keras_accuracy"))
    if keras is not None:
        source = (manifest.get("train") or {}).get("source") or {}
        name = "SavedModel" if source.get("kind") == "saved_model" else "keras"
        rows.append(f'<tr><td class="l">{name} (reference)</td><td>{fmt(keras, ".2f", 100, " %")}</td>'
                    + "<td>—</td>" * (len(head) - 2) + "</tr>")
    th = "".join(f'<th{" class=l" if i == 0 else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    return f"<table><tr>{th}</tr>{''.join(rows)}</table>"


def _gate_section(gate: dict[str, Any]) -> str:
    if not gate:
        return "<p>No gate verdict in this run.</p>"
    status = pass_fail(bool(gate.get("blessed")), "BLESSED",
                       "NOT BLESSED: nothing was announced for rollout; devices keep their release")
    return f"<p>{status}</p>{reasons_list(gate.get('reasons') or [])}"


def _device_table(devices: list[dict[str, Any]]) -> str:
    """Old manifests (schema 2) carried the device benchmarks; newer runs reach devices through rollouts."""
    return device_table(devices) or (
        "<p>No device results in this run: devices get its model through the <b>edgeops_rollout</b> DAG (canary "
        "first), whose on-device results are in <code>rollouts/&lt;id&gt;/record.json</code>, "
        "<code>rollouts/&lt;id&gt;/report.html</code> and <code>edgeops fleet status</code>.</p>")


def render_html(manifest: dict[str, Any], history: list[dict[str, Any]] | None = None) -> str:
    """The whole report page for one manifest (tolerates missing variants, devices and fields)."""
    run_id = str(manifest.get("run_id", "?"))
    variants = {k: v for k, v in (manifest.get("variants") or {}).items() if isinstance(v, dict)}
    names = _ordered_variants(variants)
    dataset = manifest.get("dataset") or {}
    config = manifest.get("config") or {}
    gate = manifest.get("gate") or {}
    counts = dataset.get("counts") or {}
    meta = [
        ("Run", run_id),
        ("Code version", manifest.get("code_version", "?")),
        ("Created", manifest.get("created_at", "?")),
        ("Profile", config.get("profile", "?")),
        ("Dataset", dataset.get("source", "?")),
        ("Classes", ", ".join(map(str, dataset.get("classes") or [])) or "?"),
        ("Split sizes", ", ".join(f"{k} {v}" for k, v in counts.items()) or "?"),
        ("Gate", f"max drop {gate.get('max_accuracy_drop_pp', '?')} pp vs fp32; deploy "
                 f"{', '.join(gate.get('deploy') or []) or 'none'}; current {gate.get('current') or 'none'}"),
    ]
    devices = [d for d in manifest.get("devices") or [] if isinstance(d, dict)]
    body = f"""<h1>EdgeOps run {escape(run_id)}</h1>
{meta_list(meta)}
<h2>Gate</h2>
{_gate_section(gate)}
<h2>Variants</h2>
<div class="note">Latencies in this section were measured on the build host (x86), not on a device.</div>
{_charts(variants, names)}
{_variants_table(manifest, names)}
<h2>Devices</h2>
{LABEL_NOTE}
{_device_table(devices)}
{history_section(history or [])}"""
    return page(f"EdgeOps run {run_id}", body)


def run(store: ArtifactStore, run_id: str, manifest: dict[str, Any],
        history: list[dict[str, Any]] | None = None) -> Artifact:
    """Render the report and upload it to ``runs/<run_id>/report/index.html``."""
    html = render_html(manifest, history).encode("utf-8")
    return store.put_bytes(keys.report(run_id), html, name="report", content_type=CONTENT_TYPE)
