"""Pareto plots: a static PNG (matplotlib) and an interactive, self-contained HTML (plotly)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from autocompress.files import replace_atomic
from autocompress.search.study import TrialRecord

if TYPE_CHECKING:
    from autocompress.sensitivity_analysis import Sensitivity

LABELS = {
    "macs": "MACs",
    "params": "parameters",
    "bitops": "BitOPs",
    "size_bytes": "size",
    "latency_ms": "latency",
    "latency_ms_predicted": "predicted ONNX Runtime latency",
}


def _label(metric: str) -> str:
    return f"{LABELS.get(metric, metric)} (ratio to base)"


def _groups(records: Sequence[TrialRecord], metric: str) -> dict[str, list[TrialRecord]]:
    scored = [r for r in records if r.scored and metric in r.ratios]
    return {
        "searched": [r for r in scored if r.baseline is None],
        "uniform baselines": [r for r in scored if (r.baseline or "").startswith("uniform")],
        "sensitivity allocation": [
            r for r in scored if r.baseline and not r.baseline.startswith("uniform")
        ],
        "over budget": [
            r for r in records if r.state == "complete" and not r.feasible and metric in r.ratios
        ],
    }


def pareto_png(
    records: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    metric: str,
    path: Path,
    title: str,
) -> None:
    # A Figure of its own, not pyplot: no global backend switched under a notebook's feet
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    styles = {
        "searched": {"color": "#4c72b0", "marker": "o", "alpha": 0.6},
        "uniform baselines": {"color": "#dd8452", "marker": "s", "alpha": 0.9},
        "sensitivity allocation": {"color": "#55a868", "marker": "D", "alpha": 0.9},
    }
    for name, group in _groups(records, metric).items():
        if name == "over budget" or not group:
            continue  # scored 0 without fine-tuning: not on the accuracy scale
        ax.scatter(
            [r.ratios[metric] for r in group],
            [100 * (r.val_accuracy or 0) for r in group],
            label=f"{name} ({len(group)})",
            s=28,
            **styles[name],  # type: ignore[arg-type]
        )
    if front:
        ax.step(
            [r.ratios[metric] for r in front],
            [100 * (r.val_accuracy or 0) for r in front],
            where="post",
            color="#c44e52",
            label=f"Pareto front ({len(front)})",
        )
        for r in front:
            ax.annotate(str(r.number), (r.ratios[metric], 100 * (r.val_accuracy or 0)), fontsize=7)
    ax.set_xlabel(_label(metric))
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    replace_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))


def pareto_html(
    records: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    metric: str,
    path: Path,
    title: str,
) -> None:
    """Hovering a point shows the trial's number, figures and policy."""
    import plotly.graph_objects as go

    def hover(r: TrialRecord) -> str:
        ratios = "<br>".join(f"{m}: {v:.3f}× base" for m, v in r.ratios.items())
        layers = "<br>".join(
            f"{name}: " + ", ".join(f"{k}={_short(v)}" for k, v in knobs.items())
            for name, knobs in r.policy.get("layers", {}).items()
        )
        head = f"trial {r.number}" + (f" ({r.baseline})" if r.baseline else "")
        return f"<b>{head}</b><br>val {100 * (r.val_accuracy or 0):.2f}%<br>{ratios}<br>{layers}"

    fig = go.Figure()
    for name, group in _groups(records, metric).items():
        if not group or name == "over budget":
            continue
        fig.add_trace(
            go.Scatter(
                x=[r.ratios[metric] for r in group],
                y=[100 * (r.val_accuracy or 0) for r in group],
                mode="markers",
                name=f"{name} ({len(group)})",
                marker={"symbol": "square" if name.startswith("uniform") else "circle"},
                hovertext=[hover(r) for r in group],
                hoverinfo="text",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[r.ratios[metric] for r in front],
            y=[100 * (r.val_accuracy or 0) for r in front],
            mode="lines+markers",
            line={"shape": "hv"},
            name=f"Pareto front ({len(front)})",
            hovertext=[hover(r) for r in front],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=title, xaxis_title=_label(metric), yaxis_title="validation accuracy (%)"
    )
    # plotly.js inside the file: the page works offline
    replace_atomic(path, lambda tmp: fig.write_html(tmp, include_plotlyjs=True, full_html=True))


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def sensitivity_png(sensitivity: Sensitivity, path: Path) -> None:
    """Score against each knob's value, one panel per kind of knob, one line per layer."""
    from matplotlib.figure import Figure  # not pyplot: see pareto_png

    curves = sensitivity.curves()
    kinds = sorted({name.rpartition("/")[2] for name in curves})
    fig = Figure(figsize=(5 * len(kinds), 4), dpi=120)
    axes = fig.subplots(1, len(kinds), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for name, points in curves.items():
            if name.rpartition("/")[2] != kind:
                continue
            xs = [float(p.value) for p in points]
            ax.plot(xs, [100 * p.score for p in points], marker="o", label=name.rpartition("/")[0])
        ax.axhline(100 * sensitivity.base_score, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel(kind)
        ax.set_ylabel("zero-cost validation accuracy (%)")
        if kind == "rank":
            ax.invert_xaxis()  # more compression to the right, as for the other knobs
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"sensitivity · {sensitivity.model} (each knob alone)", fontsize=9)
    fig.tight_layout()
    replace_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
