"""Figures of the Sensitivity page: gradient-amplitude histograms, attribution galleries, the boundary slice."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from . import PALETTE, base_layout


def gradient_histogram_figure(histograms: dict[str, dict], wrt: str = "softmax", height: int = 360) -> go.Figure:
    """Histograms of ``log10`` of each model's per-sample gradient amplitude on shared bins, and, on the
    right, how many samples have an exactly-zero gradient (no bin holds ``log10 0``).

    ``histograms``: model name -> :func:`distill_core.evaluate.log10_histograms`'s dict for it
    (``edges``, ``counts``, ``n_zero``, ``n``).
    """
    fig = make_subplots(rows=1, cols=2, column_widths=[0.8, 0.2], horizontal_spacing=0.08)
    for i, (name, h) in enumerate(histograms.items()):
        centres = (h["edges"][:-1] + h["edges"][1:]) / 2
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Bar(x=centres, y=h["counts"], width=float(h["edges"][1] - h["edges"][0]), name=name,
                             marker_color=color, opacity=0.6, legendgroup=name,
                             hovertemplate="10^%{x:.2f}: %{y} samples<extra>" + name + "</extra>"), row=1, col=1)
        fig.add_trace(go.Bar(x=[name], y=[h["n_zero"]], marker_color=color, showlegend=False, legendgroup=name,
                             text=[f"{h['n_zero']}/{h['n']}"], textposition="outside",
                             hovertemplate="%{y} samples with a zero gradient<extra>" + name + "</extra>"),
                      row=1, col=2)
    fig.update_layout(barmode="overlay", bargap=0)
    what = "softmax" if wrt == "softmax" else "logits"
    fig.update_xaxes(title=f"log10 of the mean |d {what} / dx| per sample", row=1, col=1)
    fig.update_xaxes(showticklabels=False, title="exactly 0", row=1, col=2)
    fig.update_yaxes(title="samples", row=1, col=1)
    n_max = max((h["n"] for h in histograms.values()), default=1)
    fig.update_yaxes(range=[0, n_max * 1.15], row=1, col=2)
    return base_layout(fig, height=height)


def attribution_gallery_figure(images: torch.Tensor | np.ndarray, maps: dict[str, torch.Tensor | np.ndarray],
                               col_titles: Sequence[str], height: int | None = None) -> go.Figure:
    """A grid: the images on the first row, then one row per attribution map (``maps``: row label -> (N, C, H, W)).

    Attributions are shown as |value| (max over channels), each cell scaled to its own maximum so
    that the pattern, not the scale, is compared (the hover shows the raw value).
    """
    imgs = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    rows = ["image", *maps]
    n = len(imgs)
    fig = make_subplots(rows=len(rows), cols=n, horizontal_spacing=0.01, vertical_spacing=0.02,
                        column_titles=list(col_titles), row_titles=rows)
    for j in range(n):
        img = imgs[j]
        fig.add_trace(go.Heatmap(z=img.mean(0), colorscale="gray", zmin=0, zmax=1, showscale=False,
                                 hovertemplate="%{z:.2f}<extra>pixel</extra>"), row=1, col=j + 1)
        for r, (label, m) in enumerate(maps.items(), start=2):
            a = m[j].detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m[j])
            a = np.abs(a).max(0)
            peak = float(a.max()) or 1.0
            fig.add_trace(go.Heatmap(z=a / peak, customdata=a, colorscale="Hot", zmin=0, zmax=1, showscale=False,
                                     hovertemplate="%{customdata:.3g}<extra>" + label + "</extra>"),
                          row=r, col=j + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    for i in range(1, len(rows) * n + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    for ann in fig.layout.annotations:
        ann.font.size = 11
    base_layout(fig, height=height or 110 * len(rows) + 40)
    return fig.update_layout(margin=dict(l=10, r=110, t=40, b=10))


def _class_colorscale(n: int) -> list[list]:
    scale = []
    for k in range(n):
        c = PALETTE[k % len(PALETTE)]
        scale += [[k / n, c], [(k + 1) / n, c]]
    return scale


def boundary_slice_figure(slice_: dict, class_names: Sequence[str], height: int = 440) -> go.Figure:
    """The classes a model assigns on the plane through one image (``explain.boundary_slice``'s output).

    x axis: ``u`` along the adversarial direction; y axis: ``v`` along a random orthogonal one; both
    in pixel units (L-inf). The image sits at the centre (marked); hover shows class and confidence.
    The title gives the nearest other class along each direction from the centre.
    """
    u, v = np.asarray(slice_["u"]), np.asarray(slice_["v"])
    pred, conf = np.asarray(slice_["pred"]), np.asarray(slice_["confidence"])
    n = len(class_names)
    text = np.vectorize(lambda k: str(class_names[k]))(pred)
    fig = go.Figure(go.Heatmap(
        x=u, y=v, z=pred, zmin=-0.5, zmax=n - 0.5, colorscale=_class_colorscale(n), customdata=conf, text=text,
        colorbar=dict(title="class", tickvals=list(range(n)), ticktext=[str(c) for c in class_names]),
        hovertemplate="u %{x:.3f}, v %{y:.3f}: class %{text} (p = %{customdata:.3f})<extra></extra>"))
    centre = int(slice_["center_pred"])
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers+text", text=[f"the image ({class_names[centre]})"],
                             textposition="top right", marker=dict(symbol="x", size=14, color="black"),
                             textfont=dict(color="black"), showlegend=False, hoverinfo="skip"))
    k = len(u) // 2
    along = [abs(u[j]) for j in range(len(u)) if pred[k, j] != centre]
    across = [abs(v[i]) for i in range(len(v)) if pred[i, k] != centre]
    note = (f"nearest other class: u = {min(along):.3g} along the adversarial direction" if along
            else "no other class along the adversarial direction within the slice")
    note += f"; v = {min(across):.3g} along the random one" if across else "; none along the random one"
    fig.update_xaxes(title="u: adversarial direction (pixel units)", constrain="domain")
    fig.update_yaxes(title="v: random orthogonal direction", scaleanchor="x")
    base_layout(fig, height=height)
    return fig.update_layout(title=dict(text=note, font=dict(size=13), x=0.5, xanchor="center"),
                             margin=dict(l=10, r=10, t=40, b=10))
