"""Figures of the boundary-samples page: 2-D decision boundaries with BSS paths, and one image's BSS.

Inputs are the plain dicts of ``explain.decision_grid`` and ``papers.bss.bss_paths`` /
``papers.bss.bss_toward_each_class``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import PALETTE, base_layout


def _fade(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _boundary_trace(grid: Mapping, n_classes: int) -> go.Heatmap:
    """Two classes: p(class 1) on a two-colour scale, white on the boundary; more: the predicted class."""
    if n_classes == 2:
        z = grid["probs"][..., 1]
        scale = [[0.0, _fade(PALETTE[0], 0.75)], [0.5, "rgba(255, 255, 255, 1)"], [1.0, _fade(PALETTE[1], 0.75)]]
        return go.Heatmap(x=grid["xs"], y=grid["ys"], z=z, zmin=0, zmax=1, colorscale=scale, showscale=False,
                          hovertemplate="(%{x:.2f}, %{y:.2f})<br>p(class 1) = %{z:.2f}<extra></extra>")
    colors = [_fade(PALETTE[k % len(PALETTE)], 0.45) for k in range(n_classes)]
    scale = [[k / max(n_classes - 1, 1), c] for k, c in enumerate(colors)]
    return go.Heatmap(x=grid["xs"], y=grid["ys"], z=grid["pred"], zmin=0, zmax=n_classes - 1, colorscale=scale,
                      showscale=False, hovertemplate="(%{x:.2f}, %{y:.2f})<br>class %{z}<extra></extra>")


def _contour_trace(grid: Mapping, n_classes: int, name: str) -> go.Contour:
    """The teacher's boundary as a dashed line over another model's map."""
    z = grid["probs"][..., 1] if n_classes == 2 else grid["pred"]
    end = 0.5 if n_classes == 2 else n_classes - 1.5
    return go.Contour(x=grid["xs"], y=grid["ys"], z=z, contours=dict(coloring="none", start=0.5, end=end, size=1),
                      line=dict(color="#222", width=2, dash="dash"), showscale=False, name=name, showlegend=True,
                      hoverinfo="skip")


def boundary_figure(grid: Mapping, n_classes: int, points: tuple[np.ndarray, np.ndarray] | None = None,
                    class_names: Sequence[str] | None = None, paths: Mapping | None = None, step: int | None = None,
                    teacher_grid: Mapping | None = None, title: str = "", height: int = 420) -> go.Figure:
    """A 2-D model's decision map (``explain.decision_grid``), data points, BSS paths and the teacher's boundary.

    ``points``: ``(x (N, 2), y (N,))`` drawn small, coloured by class. ``paths``: the dict of
    ``papers.bss.bss_paths``; each path is drawn from its base point (circle) up to iterate
    ``step`` (default: the last), whose point is a star in the colour of the target class.
    ``teacher_grid``: draws the teacher's boundary as a dashed line (for a student's map).
    """
    names = list(class_names or [f"class {k}" for k in range(n_classes)])
    fig = go.Figure(_boundary_trace(grid, n_classes))
    if teacher_grid is not None:
        fig.add_trace(_contour_trace(teacher_grid, n_classes, "teacher's boundary"))
    if points is not None:
        x, y = np.asarray(points[0]), np.asarray(points[1])
        for k in range(n_classes):
            m = y == k
            fig.add_trace(go.Scattergl(x=x[m, 0], y=x[m, 1], mode="markers", name=names[k], opacity=0.55,
                                       marker=dict(size=5, color=PALETTE[k % len(PALETTE)]),
                                       hovertemplate=names[k] + " (%{x:.2f}, %{y:.2f})<extra></extra>"))
    if paths is not None:
        path = np.asarray(paths["path"])
        last = path.shape[0] - 1 if step is None else int(np.clip(step, 0, path.shape[0] - 1))
        for n in range(path.shape[1]):
            seg = path[: last + 1, n]
            color = PALETTE[int(paths["target"][n]) % len(PALETTE)]
            fig.add_trace(go.Scatter(x=seg[:, 0], y=seg[:, 1], mode="lines+markers", name=f"BSS path {n}",
                                     showlegend=False, line=dict(color="#222", width=2),
                                     marker=dict(size=4, color="#222"),
                                     hovertemplate=f"path {n}, " + "step %{pointNumber}<br>(%{x:.3f}, %{y:.3f})"
                                                   "<extra></extra>"))
            fig.add_trace(go.Scatter(x=[seg[0, 0]], y=[seg[0, 1]], mode="markers", showlegend=False,
                                     marker=dict(size=11, color="white", line=dict(color="#222", width=2)),
                                     hovertemplate=f"base point {n}: teacher class {int(paths['base'][n])}"
                                                   "<extra></extra>"))
            fig.add_trace(go.Scatter(x=[seg[-1, 0]], y=[seg[-1, 1]], mode="markers", showlegend=False,
                                     marker=dict(size=14, symbol="star", color=color, line=dict(color="#222", width=1)),
                                     hovertemplate=f"step {last}: towards class {int(paths['target'][n])}"
                                                   "<extra></extra>"))
    fig.update_xaxes(range=[float(grid["xs"][0]), float(grid["xs"][-1])], constrain="domain", showgrid=False)
    fig.update_yaxes(range=[float(grid["ys"][0]), float(grid["ys"][-1])], scaleanchor="x", showgrid=False)
    base_layout(fig, title, height)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.06, x=0))
    return fig


def bss_image_figure(x: np.ndarray, result: Mapping, class_names: Sequence[str], height: int = 360) -> go.Figure:
    """One image and its BSS towards every other class (``papers.bss.bss_toward_each_class``).

    Top row: the original, then each BSS titled with its target and the class the teacher puts
    it in (with the target's probability). Bottom row: the perturbations ``x_bss - x`` on a
    red-blue scale centred at zero (the same scale for all, its limit in the first title).
    """
    x = np.asarray(x).reshape(np.asarray(result["x_bss"]).shape[1:])
    x_bss = np.asarray(result["x_bss"])
    cols = len(x_bss) + 1
    delta = x_bss - x[None]
    lim = float(np.abs(delta).max()) or 1.0
    titles = [f"original: {class_names[result['base']]}"]
    for k, landed, p in zip(result["targets"], result["landed"], result["p_target"]):
        titles.append(f"→ {class_names[int(k)]}: in {class_names[int(landed)]}<br>p<sub>{class_names[int(k)]}</sub>"
                      f" = {p:.2f}")
    titles += ["x_bss - x:"] + [f"L2 {v:.2f}" for v in result["l2"]]
    fig = make_subplots(rows=2, cols=cols, subplot_titles=titles, horizontal_spacing=0.006, vertical_spacing=0.12)
    for c in range(cols):
        img = x if c == 0 else x_bss[c - 1]
        fig.add_trace(go.Heatmap(z=img[0][::-1], colorscale="gray", zmin=0, zmax=1, showscale=False,
                                 hovertemplate="%{z:.2f}<extra></extra>"), row=1, col=c + 1)
        if c > 0:
            fig.add_trace(go.Heatmap(z=delta[c - 1][0][::-1], colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim,
                                     showscale=False, hovertemplate="%{z:+.3f}<extra></extra>"), row=2, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    for a in fig.layout.annotations:
        a.font.size = 12
    base_layout(fig, height=height)
    fig.update_layout(margin=dict(l=10, r=10, t=60, b=10))
    return fig
