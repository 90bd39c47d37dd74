"""Figures of the Attack lab: the images, the probabilities before and after, the trajectory, saliency, transfer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from . import PALETTE, base_layout

BEFORE, AFTER = PALETTE[0], PALETTE[3]


def _as_chw(img: torch.Tensor | np.ndarray) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    a = a.astype(np.float64)
    return a[0] if a.ndim == 4 else a


def _image_trace(chw: np.ndarray, zmin: float = 0.0, zmax: float = 1.0, colorscale: str = "gray",
                 label: str = "value") -> go.BaseTraceType:
    if chw.shape[0] == 1:
        return go.Heatmap(z=chw[0], colorscale=colorscale, zmin=zmin, zmax=zmax, showscale=False,
                          hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra>" + label + "</extra>")
    rgb = np.clip((np.transpose(chw, (1, 2, 0)) - zmin) / max(zmax - zmin, 1e-12), 0, 1)
    return go.Image(z=(rgb * 255).astype(np.uint8))


def _image_axes(fig: go.Figure, n: int) -> None:
    for i in range(1, n + 1):
        fig.update_xaxes(visible=False, row=1, col=i)
        fig.update_yaxes(visible=False, scaleanchor=f"x{i if i > 1 else ''}", autorange="reversed", row=1, col=i)


def attack_images_figure(x: torch.Tensor | np.ndarray, x_adv: torch.Tensor | np.ndarray,
                         titles: Sequence[str] = ("original", "perturbation", "adversarial"),
                         height: int = 280) -> go.Figure:
    """Original, amplified perturbation and adversarial image side by side; (1, C, H, W) or (C, H, W) in [0, 1].

    The perturbation ``x_adv - x`` is scaled so that its largest |value| fills the colour range (red
    brighter, blue darker; grey for RGB images, mid-grey meaning no change); the subplot title says by how much.
    """
    a, b = _as_chw(x), _as_chw(x_adv)
    delta = b - a
    peak = float(np.abs(delta).max())
    gain = 1.0 / peak if peak > 0 else 1.0
    titles = list(titles)
    titles[1] = f"{titles[1]} (x{gain:.3g}, max |d| = {peak:.3g})"
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.03)
    fig.add_trace(_image_trace(a, label="original"), row=1, col=1)
    if delta.shape[0] == 1:
        fig.add_trace(go.Heatmap(z=delta[0], colorscale="RdBu_r", zmid=0, zmin=-max(peak, 1e-12),
                                 zmax=max(peak, 1e-12), showscale=False,
                                 hovertemplate="row %{y}, col %{x}: %{z:+.3f}<extra>x_adv - x</extra>"), row=1, col=2)
    else:
        fig.add_trace(_image_trace(0.5 + 0.5 * gain * delta), row=1, col=2)
    fig.add_trace(_image_trace(b, label="adversarial"), row=1, col=3)
    _image_axes(fig, 3)
    for ann in fig.layout.annotations:
        ann.font.size = 12
    return base_layout(fig, height=height)


def probability_bars_figure(probs_before: np.ndarray, probs_after: np.ndarray, class_names: Sequence[str],
                            true_class: int | None = None, target: int | None = None,
                            height: int = 300) -> go.Figure:
    """The model's softmax on the original and on the adversarial image, grouped per class."""
    names = []
    for i, n in enumerate(class_names):
        tags = [t for t, c in (("true", true_class), ("target", target)) if c == i]
        names.append(f"{n} ({', '.join(tags)})" if tags else str(n))
    fig = go.Figure([
        go.Bar(x=names, y=np.asarray(probs_before), name="before (original)", marker_color=BEFORE,
               hovertemplate="%{x}: %{y:.4f}<extra>before</extra>"),
        go.Bar(x=names, y=np.asarray(probs_after), name="after (adversarial)", marker_color=AFTER,
               hovertemplate="%{x}: %{y:.4f}<extra>after</extra>"),
    ])
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1.02], title="probability")
    return base_layout(fig, height=height)


def trajectory_figure(series: dict[str, np.ndarray], class_names: Sequence[str],
                      loss_label: str = "attack loss", height: int = 380) -> go.Figure:
    """The attack step by step: its loss, the logit margin (below 0 = fooled, untargeted) and the predicted class."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=(loss_label, "margin Z_y - max other (targeted: Z_t - max other)",
                                        "predicted class"))
    steps = series.get("step", np.zeros(0))
    fig.add_trace(go.Scatter(x=steps, y=series.get("loss", []), mode="lines+markers", name="loss",
                             marker=dict(size=4), line=dict(color=PALETTE[1])), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=series.get("margin", []), mode="lines+markers", name="margin",
                             marker=dict(size=4), line=dict(color=PALETTE[0])), row=2, col=1)
    fig.add_hline(y=0, line_dash="dot", line_color="grey", row=2, col=1)
    preds = np.asarray(series.get("pred", []), int)
    fig.add_trace(go.Scatter(x=steps, y=[str(class_names[p]) for p in preds], mode="lines+markers",
                             line=dict(shape="hv", color=PALETTE[3]), marker=dict(size=4), name="prediction"),
                  row=3, col=1)
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=[str(c) for c in class_names], row=3, col=1)
    fig.update_xaxes(title="step", row=3, col=1)
    for ann in fig.layout.annotations:
        ann.font.size = 12
    fig.update_layout(showlegend=False)
    return base_layout(fig, height=height)


def saliency_pair_figure(before: torch.Tensor | np.ndarray, after: torch.Tensor | np.ndarray,
                         titles: Sequence[str] = ("saliency before", "saliency after"),
                         height: int = 260) -> go.Figure:
    """Two attribution maps (1, C, H, W) side by side as heatmaps (max over channels), each scaled to its own max."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles), horizontal_spacing=0.03)
    for col, m in enumerate((before, after), start=1):
        a = np.abs(_as_chw(m)).max(0)
        peak = float(a.max()) or 1.0
        fig.add_trace(go.Heatmap(z=a / peak, colorscale="Hot", zmin=0, zmax=1, showscale=False,
                                 customdata=a,
                                 hovertemplate="row %{y}, col %{x}: %{customdata:.3g}<extra></extra>"), row=1, col=col)
    _image_axes(fig, 2)
    for ann in fig.layout.annotations:
        ann.font.size = 12
    return base_layout(fig, height=height)


def transfer_figure(rows: list[dict], height: int = 300) -> go.Figure:
    """For each model, the probability of the true class on the original and on the adversarial image.

    ``rows``: dicts with ``model``, ``p_true_before``, ``p_true_after`` (and optionally ``fooled``).
    """
    models = [r["model"] for r in rows]
    fig = go.Figure([
        go.Bar(x=models, y=[r["p_true_before"] for r in rows], name="p(true class), original", marker_color=BEFORE),
        go.Bar(x=models, y=[r["p_true_after"] for r in rows], name="p(true class), adversarial", marker_color=AFTER,
               text=["fooled" if r.get("fooled") else "" for r in rows], textposition="outside"),
    ])
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.1], title="probability")
    return base_layout(fig, height=height)
