"""Figures of the Temperature page: softmax bars at T and at 1, entropy vs T, the Jacobian's 1/T scale, EBB."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import PALETTE, base_layout

T_COLOR, ONE_COLOR = PALETTE[1], PALETTE[0]


def _fmt_t(T: float) -> str:
    return f"{T:.3g}"


def softmax_bars_figure(probs_t: np.ndarray, probs_1: np.ndarray, T: float, class_names: Sequence[str],
                        true_class: int | None = None, height: int = 320) -> go.Figure:
    """Grouped bars per class: ``softmax(z / T)`` next to ``softmax(z)`` for one sample (both (C,))."""
    names = [str(c) for c in class_names]
    if true_class is not None:
        names = [f"{n} (true)" if i == true_class else n for i, n in enumerate(names)]
    fig = go.Figure([
        go.Bar(x=names, y=np.asarray(probs_t), name=f"T = {_fmt_t(T)}", marker_color=T_COLOR,
               hovertemplate="class %{x}: %{y:.4f}<extra>T = " + _fmt_t(T) + "</extra>"),
        go.Bar(x=names, y=np.asarray(probs_1), name="T = 1 (deployed)", marker_color=ONE_COLOR,
               hovertemplate="class %{x}: %{y:.4f}<extra>T = 1</extra>"),
    ])
    fig.update_layout(barmode="group", bargap=0.25)
    fig.update_yaxes(range=[0, 1.02], title="probability")
    fig.update_xaxes(type="category", title="class")
    return base_layout(fig, height=height)


def entropy_figure(temperatures: np.ndarray, entropies: np.ndarray, T: float, entropy_at_T: float,
                   n_classes: int, height: int = 320) -> go.Figure:
    """Entropy of ``softmax(z / T)`` vs T (log x), a marker at the current T and the ceiling ``log C``."""
    fig = go.Figure([
        go.Scatter(x=temperatures, y=entropies, mode="lines", name="H(softmax(z / T))", line=dict(color=T_COLOR),
                   hovertemplate="T = %{x:.3g}: H = %{y:.3f} nats<extra></extra>"),
        go.Scatter(x=[T], y=[entropy_at_T], mode="markers", name=f"T = {_fmt_t(T)}",
                   marker=dict(size=12, color=T_COLOR, line=dict(color="black", width=1)),
                   hovertemplate="T = %{x:.3g}: H = %{y:.3f} nats<extra></extra>"),
    ])
    fig.add_hline(y=float(np.log(n_classes)), line_dash="dash", line_color="grey",
                  annotation_text=f"log {n_classes} (uniform)", annotation_position="bottom right")
    fig.update_xaxes(type="log", title="temperature T")
    fig.update_yaxes(title="entropy (nats)", range=[0, float(np.log(n_classes)) * 1.08])
    return base_layout(fig, height=height)


def jacobian_scale_figure(temperatures: np.ndarray, norms: np.ndarray, zero_float32: np.ndarray, T: float,
                          norm_at_T: float, height: int = 320) -> go.Figure:
    """``||d softmax(z / T) / dx||`` vs T on log-log axes with a ``1 / T`` guide, a marker at the current T,
    and the temperatures where the float32 Jacobian is exactly zero (masked gradients) as red crosses on
    the axis floor (float32 has no positive number below about 1.4e-45)."""
    temperatures, norms = np.asarray(temperatures, float), np.asarray(norms, float)
    zero = np.asarray(zero_float32, bool)
    positive = norms[norms > 0]
    # float32 has nothing below ~1.4e-45: the axis stops just under it, and the temperatures where the
    # float32 Jacobian is exactly zero are marked on that floor
    lo = max(float(np.log10(positive.min())) - 1, -47.0) if len(positive) else -10.0
    hi = float(np.log10(positive.max())) + 0.5 if len(positive) else 0.0
    floor = 10 ** (lo + 0.4)
    fig = go.Figure(go.Scatter(x=temperatures, y=np.where(norms > 0, norms, np.nan), mode="lines",
                               name="||d softmax_T / dx||",
                               line=dict(color=T_COLOR),
                               hovertemplate="T = %{x:.3g}: %{y:.3g}<extra></extra>"))
    if len(norms) and norms[-1] > 0:
        guide = norms[-1] * temperatures[-1] / temperatures
        fig.add_trace(go.Scatter(x=temperatures, y=guide, mode="lines", name="1 / T", hoverinfo="skip",
                                 line=dict(color="grey", dash="dot")))
    if zero.any():
        fig.add_trace(go.Scatter(x=temperatures[zero], y=np.maximum(norms[zero], floor), mode="markers",
                                 name="exactly 0 in float32 (masked)", marker=dict(color="#E45756", symbol="x", size=8),
                                 customdata=norms[zero],
                                 hovertemplate="T = %{x:.3g}: 0 in float32 (%{customdata:.3g} in float64)"
                                               "<extra></extra>"))
    fig.add_trace(go.Scatter(x=[T], y=[max(norm_at_T, floor)], mode="markers", name=f"T = {_fmt_t(T)}",
                             marker=dict(size=12, color=T_COLOR, line=dict(color="black", width=1)),
                             hovertemplate="T = %{x:.3g}: %{y:.3g}<extra></extra>"))
    fig.add_vline(x=1.0, line_dash="dash", line_color=ONE_COLOR, annotation_text="deployed (T = 1)",
                  annotation_position="bottom right")
    fig.update_xaxes(type="log", title="temperature T")
    fig.update_yaxes(type="log", title="Jacobian norm", range=[lo, hi], exponentformat="power")
    return base_layout(fig, height=height)


def ebb_entropy_figure(temperatures: np.ndarray, curves: dict[str, np.ndarray], points: dict[str, tuple[float, float]],
                       height: int = 340) -> go.Figure:
    """Mean entropy vs T for each teacher (``curves``: name -> (len T,)), with each teacher's chosen
    temperature as a marker (``points``: name -> (T, H)) and a dashed line at the entropy they share."""
    fig = go.Figure()
    for i, (name, H) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=temperatures, y=H, mode="lines", name=name, line=dict(color=color),
                                 hovertemplate="T = %{x:.3g}: H = %{y:.3f}<extra>" + name + "</extra>"))
        if name in points:
            t, h = points[name]
            fig.add_trace(go.Scatter(x=[t], y=[h], mode="markers+text", text=[f"T = {_fmt_t(t)}"],
                                     textposition="top left", showlegend=False,
                                     marker=dict(size=12, color=color, line=dict(color="black", width=1)),
                                     hovertemplate="T = %{x:.3g}: H = %{y:.3f}<extra>" + name + "</extra>"))
    if points:
        h = float(np.mean([p[1] for p in points.values()]))
        fig.add_hline(y=h, line_dash="dash", line_color="grey")
    fig.update_xaxes(type="log", title="temperature T")
    fig.update_yaxes(title="mean entropy (nats)")
    return base_layout(fig, height=height)


def ebb_simulation_figure(sim: dict[str, np.ndarray], names: tuple[str, str] = ("clean teacher", "robust teacher"),
                          height: int = 340) -> go.Figure:
    """EBB run to convergence: the two temperatures (left) and the two mean entropies (right) per step."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("temperatures tau", "mean entropies H"),
                        horizontal_spacing=0.12)
    for i, (suffix, name) in enumerate(zip(("nat", "adv"), names)):
        color = PALETTE[i]
        fig.add_trace(go.Scatter(x=sim["step"], y=sim[f"tau_{suffix}"], mode="lines", name=f"tau ({name})",
                                 line=dict(color=color)), row=1, col=1)
        fig.add_trace(go.Scatter(x=sim["step"], y=sim[f"H_{suffix}"], mode="lines", name=f"H ({name})",
                                 line=dict(color=color, dash="dot")), row=1, col=2)
    fig.update_xaxes(title="EBB step")
    base_layout(fig, height=height)
    return fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, x=0), margin=dict(b=10, t=30))
