"""Previews of datasets: an image grid, or a scatter of 2-D points."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..data import DatasetInfo
from . import PALETTE, base_layout


def image_grid_figure(images: torch.Tensor, titles: list[str] | None = None, cols: int = 5,
                      height: int = 260) -> go.Figure:
    """A grid of images (N, C, H, W) in [0, 1]; grey for one channel, RGB for three."""
    n = len(images)
    rows = int(np.ceil(n / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.08)
    for i, img in enumerate(images):
        arr = img.detach().cpu().numpy()
        r, c = divmod(i, cols)
        if arr.shape[0] == 1:
            trace = go.Heatmap(z=arr[0][::-1], colorscale="gray", zmin=0, zmax=1, showscale=False,
                               hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>")
        else:
            trace = go.Image(z=(np.transpose(arr, (1, 2, 0)) * 255).astype(np.uint8))
        fig.add_trace(trace, row=r + 1, col=c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    for a in fig.layout.annotations:
        a.font.size = 11
    return base_layout(fig, height=height)


def points_figure(x: torch.Tensor, y: torch.Tensor, class_names, height: int = 260) -> go.Figure:
    """2-D points coloured by class."""
    fig = go.Figure()
    xs, ys = x.cpu().numpy(), y.cpu().numpy()
    for k, name in enumerate(class_names):
        m = ys == k
        fig.add_trace(go.Scattergl(x=xs[m, 0], y=xs[m, 1], mode="markers", name=name,
                                   marker=dict(size=5, color=PALETTE[k % len(PALETTE)])))
    fig.update_xaxes(range=[0, 1], constrain="domain")
    fig.update_yaxes(range=[0, 1], scaleanchor="x")
    return base_layout(fig, height=height)


def dataset_preview_figure(x: torch.Tensor, y: torch.Tensor, info: DatasetInfo, n: int = 10) -> go.Figure:
    """One example per class (images), or all points (2-D)."""
    if not info.is_image:
        return points_figure(x, y, info.class_names)
    idx = [int(torch.nonzero(y == k)[0]) for k in range(min(info.num_classes, n)) if (y == k).any()]
    return image_grid_figure(x[idx], [info.class_names[int(y[i])] for i in idx])
