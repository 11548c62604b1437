"""Render a run's manifest as one self-contained HTML page and upload it next to the run's artifacts.

The page has no external resources: inline CSS and charts as base64 PNGs (matplotlib Agg, imported lazily).
Every piece of text that comes from the manifest goes through ``html.escape``.
Timings labelled ``host`` or ``emulated`` were taken on x86 and are never presented as Raspberry Pi speeds.
"""

from __future__ import annotations

from html import escape
from typing import Any

from tasks.core import keys
from tasks.core.manifest import ManifestVariant, RunManifest
from tasks.core.modes import QUANT_MODES
from tasks.core.storage import Artifact, ArtifactStore
from tasks.core.verdict import Finding, VariantVerdict
from tasks.report.charts import (
    CONTENT_TYPE,
    LABEL_NOTE,
    chart,
    device_table,
    figures,
    fmt,
    meta_list,
    page,
    pass_fail,
    reasons_list,
    size,
)
from tasks.report.classes import class_section
from tasks.report.history import history_section

__all__ = ["CONTENT_TYPE", "Artifact", "render_html", "run"]


def _ordered_variants(variants: dict[str, ManifestVariant]) -> list[str]:
    known = [m for m in QUANT_MODES if m in variants]
    return known + sorted(m for m in variants if m not in QUANT_MODES)


def _charts(variants: dict[str, ManifestVariant], names: list[str]) -> str:
    if not names:
        return "<p>No variants were evaluated in this run.</p>"
    acc_pct = [variants[m].accuracy * 100 for m in names]
    sizes = [variants[m].size_bytes for m in names]
    big = max(sizes, default=0) >= 2**20
    unit, div = ("MB", 2**20) if big else ("KB", 2**10)
    p50 = [variants[m].latency_p50_ms for m in names]
    p90 = [variants[m].latency_p90_ms for m in names]
    charts = [
        ("Accuracy by variant", chart("Accuracy by variant", names, acc_pct, "accuracy (%)")),
        (f"Model size by variant ({unit})", chart(f"Model size ({unit})", names, [s / div for s in sizes], unit)),
        ("Host latency, not device: p50 bar, p90 whisker (ms)",
         chart("Host latency, not device (p50, p90 whisker)", names, p50, "ms", upper=p90)),
    ]
    return figures(charts)


def _variants_table(manifest: RunManifest, names: list[str]) -> str:
    variants, current, deploy = manifest.variants, manifest.current, set(manifest.deploy)
    base = variants["fp32"].accuracy if "fp32" in variants else None
    level = f"{1 - manifest.gate.significance:.0%}" if manifest.gate else "95%"
    head = ("variant", "accuracy", "drop vs fp32", f"drop bound ({level})", "p (McNemar)", "size", "gzip size",
            "p50 ms", "p90 ms", "agreement", "gate", "ships")
    rows = []
    for m in names:
        v, verdict = variants[m], variants[m].gate
        drop = "—" if base is None else f"{(base - v.accuracy) * 100:+.2f} pp"
        cells = [f'<td class="l">{escape(m)}{" (current)" if m == current else ""}</td>',
                 f"<td>{fmt(v.accuracy, '.2f', 100, ' %')}</td>", f"<td>{drop}</td>",
                 f"<td>{fmt(verdict.drop_upper_pp if verdict else None, '+.2f', suffix=' pp')}</td>",
                 f"<td>{fmt(verdict.p_value if verdict else None, '.3g')}</td>", f"<td>{size(v.size_bytes)}</td>",
                 f"<td>{size(v.gzip_bytes)}</td>",
                 f"<td>{fmt(v.latency_p50_ms, '.3f')}</td>", f"<td>{fmt(v.latency_p90_ms, '.3f')}</td>",
                 f"<td>{fmt(v.agreement, '.2f', 100, ' %')}</td>",
                 f"<td>{_finding(verdict)}</td>",
                 f"<td>{'yes' if m in deploy else 'no'}</td>"]
        rows.append(f'<tr{" class=current" if m == current else ""}>{"".join(cells)}</tr>')
    source = manifest.train.source if manifest.train is not None else None
    name = "SavedModel" if source is not None and source.kind == "saved_model" else "keras"
    rows.append(f'<tr><td class="l">{name} (reference)</td>'
                f'<td>{fmt(manifest.evaluation.keras_accuracy, ".2f", 100, " %")}</td>'
                + "<td>—</td>" * (len(head) - 2) + "</tr>")
    th = "".join(f'<th{" class=l" if i == 0 else ""}>{escape(h)}</th>' for i, h in enumerate(head))
    return f"<table><tr>{th}</tr>{''.join(rows)}</table>"


def _finding(verdict: VariantVerdict | None) -> str:
    if verdict is None:
        return "—"
    if verdict.finding == Finding.INCONCLUSIVE:
        need = f" (~{verdict.examples_needed} images)" if verdict.examples_needed else ""
        return f'<span class="warn">inconclusive{need}</span>'
    return pass_fail(verdict.passed)


def _gate_section(manifest: RunManifest) -> str:
    if manifest.gate is None:
        return "<p>No gate verdict in this run.</p>"
    outcome = manifest.gate.outcome or ("blessed" if manifest.gate.blessed else "not_blessed")
    status = pass_fail(manifest.gate.blessed, "BLESSED", f"{outcome.upper().replace('_', ' ')}: nothing was "
                                                         "announced for rollout; devices keep their release")
    return f"<p>{status}</p>{reasons_list(list(manifest.gate.reasons))}"


def _device_table(manifest: RunManifest) -> str:
    """Old manifests (schema 2) carried the device benchmarks; newer runs reach devices through rollouts."""
    return device_table([d.to_xcom() for d in manifest.devices]) or (
        "<p>No device results in this run: devices get its model through the <b>edgeops_rollout</b> DAG (canary "
        "first), whose on-device results are in <code>rollouts/&lt;id&gt;/record.json</code>, "
        "<code>rollouts/&lt;id&gt;/report.html</code> and <code>edgeops fleet status</code>.</p>")


def render_html(manifest: RunManifest, history: list[dict[str, Any]] | None = None) -> str:
    """The whole report page for one manifest (tolerates no variants, no devices and no gate verdict)."""
    names = _ordered_variants(manifest.variants)
    counts = manifest.dataset.get("counts", {})
    drop = manifest.gate.max_accuracy_drop_pp if manifest.gate else (
        manifest.legacy_gate.max_accuracy_drop_pp if manifest.legacy_gate else None)
    meta = [
        ("Run", manifest.run_id),
        ("Code version", manifest.code_version),
        ("Created", manifest.created_at),
        ("Profile", manifest.profile or "?"),
        ("Dataset", manifest.source or "?"),
        ("Classes", ", ".join(manifest.classes) or "?"),
        ("Split sizes", ", ".join(f"{k} {v}" for k, v in counts.items()) or "?"),
        ("Gate", f"max drop {'?' if drop is None else drop} pp vs fp32; deploy "
                 f"{', '.join(manifest.deploy) or 'none'}; current {manifest.current or 'none'}"),
    ]
    body = f"""<h1>EdgeOps run {escape(manifest.run_id)}</h1>
{meta_list(meta)}
<h2>Gate</h2>
{_gate_section(manifest)}
<h2>Variants</h2>
<div class="note">Latencies in this section were measured on the build host (x86), not on a device.</div>
{_charts(manifest.variants, names)}
{_variants_table(manifest, names)}
<h2>Per class</h2>
{class_section(manifest, names)}
<h2>Devices</h2>
{LABEL_NOTE}
{_device_table(manifest)}
{history_section(history or [])}"""
    return page(f"EdgeOps run {manifest.run_id}", body)


def run(store: ArtifactStore, run_id: str, manifest: RunManifest,
        history: list[dict[str, Any]] | None = None) -> Artifact:
    """Render the report and upload it to ``runs/<run_id>/report/index.html``."""
    html = render_html(manifest, history).encode("utf-8")
    return store.put_bytes(keys.report(run_id), html, name="report", content_type=CONTENT_TYPE)
