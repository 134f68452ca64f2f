"""Report figures (PNG) with matplotlib's Agg canvas: no display, no global pyplot state.

* :func:`passk_curves`: pass@k against k per group, with confidence-interval bars.
* :func:`quality_diversity_scatter`: one point per run, coloured by group, group means marked.
* :func:`loss_curves`: train (solid) and eval (dashed) loss per run, one colour per group.
* :func:`passk_plot`: one run's pass@k against k, from its metrics dict (for the pipeline to log
  as an artifact).
* :func:`temperature_frontier`: each group's (pass@1, pass@k) points over sampling temperatures,
  joined in temperature order (does a method beat the base model's temperature trade-off?).

Every function writes the figure to ``path`` (parent folders created) and returns it.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polylora.errors import DataError

__all__ = [
    "Interval",
    "RunPoint",
    "loss_curves",
    "passk_curves",
    "passk_plot",
    "quality_diversity_scatter",
    "temperature_frontier",
]

#: ``(mean, low, high)`` of one value, e.g. a t-interval over seeds.
Interval = tuple[float, float, float]
#: ``(group, quality, diversity)`` of one run.
RunPoint = tuple[str, float, float]
Curve = Sequence[tuple[int, float]]

_PASSK_KEY = re.compile(r"^(?:eval/)?pass(?:@|_at_)([1-9][0-9]*)$")
_DPI = 110


def _figure(width: float = 6.4, height: float = 4.4) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def _colors(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def passk_curves(
    series: Mapping[str, Mapping[int, Interval]],
    path: str | Path,
    title: str = "pass@k per group (mean over seeds, 95% CI)",
) -> Path:
    """Plot pass@k against k for each group; bars span each point's ``(low, high)`` interval."""
    if not any(series.values()):
        raise DataError("passk_curves: no pass@k values to plot")
    fig = _figure()
    ax = fig.add_subplot()
    colors = _colors(list(series))
    all_ks: set[int] = set()
    for group, points in series.items():
        if not points:
            continue
        ks = sorted(points)
        all_ks.update(ks)
        means = [points[k][0] for k in ks]
        lower = [max(0.0, points[k][0] - points[k][1]) for k in ks]
        upper = [max(0.0, points[k][2] - points[k][0]) for k in ks]
        ax.errorbar(ks, means, yerr=[lower, upper], marker="o", capsize=4, label=group,
                    color=colors[group])
    ax.set_xticks(sorted(all_ks))
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_ylim(bottom=0.0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="group")
    return _save(fig, path)


def quality_diversity_scatter(
    points: Sequence[RunPoint],
    path: str | Path,
    quality_name: str = "accuracy",
    diversity_name: str = "semantic_diversity",
    diversity_lower_is_better: bool = False,
) -> Path:
    """Scatter quality (y) against diversity (x), one point per run; group means as stars."""
    finite = [(g, q, d) for g, q, d in points if math.isfinite(q) and math.isfinite(d)]
    if not finite:
        raise DataError("quality_diversity_scatter: no run has both values")
    fig = _figure()
    ax = fig.add_subplot()
    groups = list(dict.fromkeys(g for g, _, _ in finite))
    colors = _colors(groups)
    for group in groups:
        qs = [q for g, q, _ in finite if g == group]
        ds = [d for g, _, d in finite if g == group]
        ax.scatter(ds, qs, color=colors[group], alpha=0.6, label=f"{group} (n={len(qs)})")
        ax.scatter([sum(ds) / len(ds)], [sum(qs) / len(qs)], color=colors[group], marker="*",
                   s=220, edgecolors="black", linewidths=0.8)
    note = " (lower = more diverse)" if diversity_lower_is_better else ""
    ax.set_xlabel(f"{diversity_name}{note}")
    ax.set_ylabel(quality_name)
    ax.set_title("quality vs diversity (runs; ★ = group mean)")
    ax.grid(alpha=0.3)
    ax.legend(title="group")
    return _save(fig, path)


def loss_curves(
    curves: Mapping[str, Sequence[tuple[Curve, Curve]]],
    path: str | Path,
    title: str = "train (solid) and eval (dashed) loss",
) -> Path:
    """Overlay every run's ``(train_curve, eval_curve)``; one colour per group."""
    if not any(tr or ev for runs in curves.values() for tr, ev in runs):
        raise DataError("loss_curves: no train/loss or eval/loss points to plot")
    fig = _figure(7.2, 4.6)
    ax = fig.add_subplot()
    colors = _colors(list(curves))
    for group, runs in curves.items():
        labelled = False
        for train, evals in runs:
            if train:
                ax.plot([s for s, _ in train], [v for _, v in train], color=colors[group],
                        alpha=0.75, linewidth=1.2,
                        label=None if labelled else f"{group} train")
            if evals:
                ax.plot([s for s, _ in evals], [v for _, v in evals], color=colors[group],
                        linestyle="--", marker=".", alpha=0.9, linewidth=1.4,
                        label=None if labelled else f"{group} eval")
            labelled = labelled or bool(train or evals)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def passk_plot(
    metrics: Mapping[str, float],
    path: str | Path | None = None,
    title: str = "pass@k",
) -> Path:
    """One run's pass@k against k from its metrics (``eval/pass@k``, ``eval/pass_at_k`` or
    ``pass@k`` keys); ``<key>_moe`` margins of error, when present, become error bars.

    Writes to ``path`` (default: ``passk.png`` in a new temporary folder) and returns it; a
    metrics dict without any pass@k raises :class:`~polylora.errors.DataError`.
    """
    values: dict[int, float] = {}
    moe: dict[int, float] = {}
    for key, value in metrics.items():
        is_moe = key.endswith("_moe")
        match = _PASSK_KEY.match(key[: -len("_moe")] if is_moe else key)
        if not match or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        (moe if is_moe else values)[int(match.group(1))] = float(value)
    if not values:
        raise DataError(
            f"passk_plot: no pass@k metric among {', '.join(sorted(metrics)) or 'none'}"
        )
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="polylora-passk-")) / "passk.png"
    ks = sorted(values)
    fig = _figure(5.6, 4.0)
    ax = fig.add_subplot()
    errs = [moe.get(k, 0.0) for k in ks]
    ax.errorbar(ks, [values[k] for k in ks], yerr=errs if any(errs) else None, marker="o",
                capsize=4)
    for k in ks:
        ax.annotate(f"{values[k]:.3f}", (k, values[k]), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize="small")
    ax.set_xticks(ks)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0.0, 1.05)
    ax.set_title(title + (" (±95% margin of error)" if any(errs) else ""))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def temperature_frontier(
    points: Mapping[str, Mapping[float, tuple[float, float]]],
    path: str | Path,
    x_name: str = "pass@1",
    y_name: str = "pass@10",
    title: str = "temperature frontier (mean over seeds)",
) -> Path:
    """One line per group through its ``(x, y)`` points in temperature order, each point
    labelled with its temperature: a group whose line lies above and right of another's
    dominates it at every temperature tried."""
    series = {g: sorted(p.items()) for g, p in points.items() if p}
    if not series:
        raise DataError("temperature_frontier: no points to plot")
    fig = _figure()
    ax = fig.add_subplot()
    colors = _colors(list(series))
    for group, pts in series.items():
        xs = [xy[0] for _, xy in pts]
        ys = [xy[1] for _, xy in pts]
        ax.plot(xs, ys, marker="o", label=group, color=colors[group])
        for t, (x, y) in pts:
            ax.annotate(f"T={t:g}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize="small", color=colors[group])
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="arm")
    return _save(fig, path)
