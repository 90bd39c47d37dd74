"""Figures of the defensive-distillation page: the T sweep, gradient amplitudes, the *Break it* panel.

Every function takes the plain dicts of :mod:`distill_core.papers.defensive` (``sweep_rows``,
``sweep_baseline``, ``break_defensive``) or of a job's event series, and returns a ``go.Figure``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import PALETTE, base_layout

# Papernot et al. 2016, MNIST: JSMA success 95.89 % at T = 1 (no distillation) and 0.45 % at T = 100.
PAPER_JSMA_MNIST = ((1.0, 95.89), (100.0, 0.45))


def _pct(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else 100 * v


def _log_x(fig: go.Figure, temperatures: Sequence[float], row: int | None = None, col: int | None = None) -> None:
    ticks = sorted({float(t) for t in temperatures})
    fig.update_xaxes(type="log", title="temperature T (log scale)", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks],
                     row=row, col=col)


def _highlight(fig: go.Figure, T: float | None) -> None:
    if T is not None:
        fig.add_vline(x=float(T), line=dict(color="#888", dash="dot", width=2),
                      annotation_text=f"your T = {T:g}", annotation_position="top")


def sweep_figure(rows: Sequence[Mapping], highlight_T: float | None = None, baseline: Mapping | None = None,
                 paper: bool = True, title: str = "", height: int = 360) -> go.Figure:
    """JSMA-on-softmax success and clean accuracy (percent) against T on a log axis.

    ``rows``: sweep points (``papers.defensive.sweep_rows``) with ``T``, ``jsma_softmax_success`` and
    ``test_accuracy`` as fractions; where they also carry ``robust_accuracy`` (AutoAttack, the
    truth) and ``apparent_robust_accuracy`` (PGD-CE), both are drawn: the naive attack's number
    climbing with T while the true one stays at the floor (Carlini & Wagner). ``highlight_T``
    draws a dotted line at that temperature; ``baseline`` (the undistilled model,
    ``papers.defensive.sweep_baseline``) adds its two values as open diamonds at T = 1; ``paper`` adds
    Papernot et al.'s two MNIST end points for comparison.
    """
    ts = [r["T"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ts, y=[_pct(r["jsma_softmax_success"]) for r in rows], mode="lines+markers",
                             name="JSMA success on the softmax", line=dict(color=PALETTE[3], width=3),
                             hovertemplate="T = %{x:g}<br>JSMA success %{y:.1f} %<extra></extra>"))
    fig.add_trace(go.Scatter(x=ts, y=[_pct(r["test_accuracy"]) for r in rows], mode="lines+markers",
                             name="clean test accuracy", line=dict(color=PALETTE[0], width=3),
                             hovertemplate="T = %{x:g}<br>accuracy %{y:.1f} %<extra></extra>"))
    for key, name, color, dash in (("apparent_robust_accuracy", "apparent robust accuracy (PGD-CE)", PALETTE[4], "dot"),
                                   ("robust_accuracy", "true robust accuracy (AutoAttack)", PALETTE[2], "solid")):
        ys = [_pct(r.get(key)) for r in rows]
        if any(v is not None for v in ys):
            fig.add_trace(go.Scatter(x=ts, y=ys, mode="lines+markers", name=name,
                                     line=dict(color=color, width=3, dash=dash),
                                     hovertemplate="T = %{x:g}<br>" + name + " %{y:.1f} %<extra></extra>"))
    if baseline is not None:
        fig.add_trace(go.Scatter(x=[1.0, 1.0], y=[_pct(baseline["jsma_softmax_success"]),
                                                   _pct(baseline["test_accuracy"])],
                                 mode="markers", name="undistilled model",
                                 marker=dict(symbol="diamond-open", size=13, color=[PALETTE[3], PALETTE[0]],
                                             line=dict(width=2)),
                                 hovertemplate="undistilled: %{y:.1f} %<extra></extra>"))
    if paper:
        fig.add_trace(go.Scatter(x=[t for t, _ in PAPER_JSMA_MNIST], y=[s for _, s in PAPER_JSMA_MNIST],
                                 mode="markers", name="paper (MNIST, JSMA success)",
                                 marker=dict(symbol="x", size=11, color="#777"),
                                 hovertemplate="Papernot et al. 2016: T = %{x:g}, %{y:.2f} %<extra></extra>"))
    _log_x(fig, ts + ([t for t, _ in PAPER_JSMA_MNIST] if paper else []))
    fig.update_yaxes(title="percent", range=[-3, 103])
    _highlight(fig, highlight_T)
    return base_layout(fig, title, height)


def confidence_figure(rows: Sequence[Mapping], highlight_T: float | None = None, title: str = "",
                      height: int = 320) -> go.Figure:
    """Mean confidence on correct samples (left) and, where measured, ``rho_adv`` (right) against T, in percent.

    ``rho_adv`` (Papernot et al.'s robustness: the share of pixels uncapped JSMA must change) is
    left out when no row has it; the x axes are log-T.
    """
    ts = [r["T"] for r in rows]
    rho = [_pct(r.get("rho_adv")) for r in rows]
    has_rho = any(v is not None for v in rho)
    fig = make_subplots(rows=1, cols=2 if has_rho else 1, horizontal_spacing=0.15,
                        subplot_titles=("confidence (%)", "rho_adv (%)") if has_rho else None)
    fig.add_trace(go.Scatter(x=ts, y=[_pct(r["confidence"]) for r in rows], mode="lines+markers",
                             name="confidence (mean top probability)", line=dict(color=PALETTE[2], width=3),
                             hovertemplate="T = %{x:g}<br>confidence %{y:.2f} %<extra></extra>"), row=1, col=1)
    _log_x(fig, ts, row=1, col=1)
    if has_rho:
        fig.add_trace(go.Scatter(x=ts, y=rho, mode="lines+markers", name="rho_adv (pixels JSMA must change)",
                                 line=dict(color=PALETTE[5], width=3),
                                 hovertemplate="T = %{x:g}<br>rho_adv %{y:.2f} %<extra></extra>"), row=1, col=2)
        _log_x(fig, ts, row=1, col=2)
        fig.update_yaxes(rangemode="tozero", row=1, col=2)
    if highlight_T is not None:
        for col in range(1, 3 if has_rho else 2):
            fig.add_vline(x=float(highlight_T), line=dict(color="#888", dash="dot", width=2), row=1, col=col)
    return base_layout(fig, title, height, showlegend=False)


def _t_colors(n: int) -> list[str]:
    """Light to dark red: low to high temperature."""
    return [f"rgb({int(250 - 120 * f)}, {int(170 - 150 * f)}, {int(120 - 100 * f)})"
            for f in (np.linspace(0, 1, n) if n > 1 else [1.0])]


def gradient_histogram_figure(rows: Sequence[Mapping], highlight_T: float | None = None, title: str = "",
                              height: int = 360) -> go.Figure:
    """Papernot et al.'s adversarial gradient amplitude: one histogram of log10 mean ``|dF/dx|`` per T.

    Each row needs ``T``, ``grad_hist`` (``edges`` in log10 units and ``counts``) and
    ``zero_grad_fraction`` (samples whose gradient is exactly 0: no bin on a log axis, so the
    legend gives their share). Counts are shown as percent of the samples; the highlighted T
    is drawn thicker.
    """
    fig = go.Figure()
    drawn = [r for r in rows if r.get("grad_hist") and len(r["grad_hist"].get("counts", [])) > 0]
    for r, color in zip(drawn, _t_colors(len(drawn))):
        edges = np.asarray(r["grad_hist"]["edges"], dtype=float)
        counts = np.asarray(r["grad_hist"]["counts"], dtype=float)
        zero = r.get("zero_grad_fraction")
        total = counts.sum() / (1 - zero) if zero is not None and not math.isnan(zero) and zero < 1 else counts.sum()
        share = 100 * counts / max(total, 1)
        centers = (edges[:-1] + edges[1:]) / 2
        zero_txt = "" if zero is None or math.isnan(zero) else f", {100 * zero:.0f} % exactly 0"
        bold = highlight_T is not None and math.isclose(r["T"], highlight_T)
        fig.add_trace(go.Scatter(x=centers, y=share, mode="lines", line=dict(shape="hvh", color=color,
                                 width=4 if bold else 2), fill="tozeroy", opacity=0.5,
                                 name=f"T = {r['T']:g}{zero_txt}",
                                 hovertemplate="|dF/dx| ~ 1e%{x:.1f}<br>%{y:.1f} % of samples<extra>T = "
                                               + f"{r['T']:g}</extra>"))
    lo, hi = -45, 0
    ticks = list(range(lo, hi + 1, 5))
    fig.update_xaxes(title="mean |dF/dx| of the softmax (log scale)", range=[lo - 1, hi + 1], tickvals=ticks,
                     ticktext=[f"1e{t}" for t in ticks])
    fig.update_yaxes(title="% of test samples")
    return base_layout(fig, title, height)


def break_it_figure(result: Mapping, title: str = "", height: int = 320) -> go.Figure:
    """Horizontal bars of attack success (percent) from ``papers.defensive.break_defensive``.

    The attacks that defensive distillation stops (through the softmax: rows with ``masked``)
    are grey, those that break it red; the row order is the result's, from the top.
    """
    rows = list(result["rows"])[::-1]
    colors = ["#9a9a9a" if r["masked"] else PALETTE[3] for r in rows]
    fig = go.Figure(go.Bar(x=[100 * r["success"] for r in rows], y=[r["attack"] for r in rows], orientation="h",
                           marker_color=colors, text=[f"{100 * r['success']:.0f} %" for r in rows],
                           textposition="outside", customdata=[r.get("detail", "") for r in rows],
                           hovertemplate="%{y}: %{x:.1f} %<br>%{customdata}<extra></extra>"))
    fig.update_xaxes(title=f"attack success on {result['n']} test images (%)", range=[0, 112])
    fig.update_yaxes(automargin=True)
    return base_layout(fig, title, height, showlegend=False)


def training_figure(series: Mapping[str, Mapping], title: str = "", height: int = 300) -> go.Figure:
    """Loss per step and test accuracy per epoch of each stage of a job (``{stage name: job_series(...)}``)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "test accuracy (%)"))
    for i, (name, s) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        steps = s.get("steps", {})
        if steps.get("step"):
            fig.add_trace(go.Scatter(x=steps["step"], y=steps.get("loss", []), mode="lines", name=f"{name} loss",
                                     line=dict(color=color)), row=1, col=1)
        ev = s.get("evals", {})
        if ev.get("epoch"):
            fig.add_trace(go.Scatter(x=ev["epoch"], y=[100 * a for a in ev["test_accuracy"]], mode="lines+markers",
                                     name=f"{name} accuracy", line=dict(color=color, dash="dot")), row=1, col=2)
    fig.update_xaxes(title="step", row=1, col=1)
    last = max((max(s.get("evals", {}).get("epoch") or [1]) for s in series.values()), default=1)
    fig.update_xaxes(title="epoch", row=1, col=2, tick0=1, dtick=max(1, math.ceil(last / 10)))
    base_layout(fig, title, height)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))
    return fig
