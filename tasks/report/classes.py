"""The report's per-class view: recall per class for every variant, and a confusion-matrix heat map per variant.

Both come from the evaluate step's figures in the manifest (``class_recall``, ``confusion``); a run from before
they were measured shows a note instead.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from tasks.core.manifest import ManifestVariant, RunManifest
from tasks.report.charts import figures


def _png(fig: object) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # type: ignore[attr-defined]
    return base64.b64encode(buf.getvalue()).decode("ascii")


def heatmap(title: str, classes: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """Rows: true class, columns: predicted class; each cell annotated with its count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    side = 1.6 + 0.38 * len(classes)
    fig = Figure(figsize=(side + 0.8, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    top = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="white" if count > top / 2 else "black")
    ax.set_xticks(range(len(classes)), labels=list(classes), fontsize=7, rotation=45)
    ax.set_yticks(range(len(classes)), labels=list(classes), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return _png(fig)


def recall_bars(classes: Sequence[str], recalls: dict[str, Sequence[float]]) -> str:
    """Grouped bars: one group per class, one bar per variant (recall in %)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(6.4, 3.2 + 0.32 * len(classes)), 3.6), dpi=100)  # the page shows charts ~380 px wide
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(recalls))
    for k, (name, values) in enumerate(recalls.items()):
        ax.bar([i + k * width for i in range(len(classes))], [v * 100 for v in values], width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(classes))], labels=list(classes), fontsize=7)
    ax.set_ylabel("recall (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Recall per class", fontsize=10)
    ax.legend(fontsize=6, ncols=3, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def class_section(manifest: RunManifest, names: list[str]) -> str:
    measured: dict[str, ManifestVariant] = {m: manifest.variants[m] for m in names
                                            if manifest.variants[m].confusion is not None}
    classes = list(manifest.classes)
    if not measured or not classes:
        return "<p>No per-class figures in this run (measured by the evaluate step since per-class gating).</p>"
    charts = [("Recall per class and variant", recall_bars(classes, {m: v.class_recall or () for m, v in
                                                                      measured.items()}))]
    charts += [(f"Confusion matrix: {m}", heatmap(f"{m} (test split)", classes, v.confusion or ()))
               for m, v in measured.items()]
    return figures(charts)
