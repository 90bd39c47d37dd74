"""Training curves: loss, accuracy, a method's own series (MTARD's tau / w / entropies), model comparison.

Inputs are plain columns, as :func:`ui.jobs.job_series` returns them for a live job
(``{"steps": {"step": [...], "loss": [...], ...}, "evals": {"epoch": [...], "test_accuracy": [...]}}``)
or as :func:`distill_core.runs.read_metrics` records for a saved run. Missing values are None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from . import PALETTE, base_layout

# Step columns that are bookkeeping, not a method's series.
TRAINER_COLUMNS = ("step", "loss", "lr")
MAX_POINTS = 1500
FEW_POINTS = 50         # below this many points a line also gets markers (one step alone is visible)


def _legend_right(fig: go.Figure) -> go.Figure:
    """Legend to the right of the plot, so it covers neither the title nor the curves."""
    fig.update_layout(legend=dict(orientation="v", x=1.01, xanchor="left", y=1, yanchor="top"))
    return fig


def downsample(x: Sequence, ys: Mapping[str, Sequence], max_points: int = MAX_POINTS) -> tuple[list, dict]:
    """Every k-th point (always keeping the last) so that at most ``max_points`` remain; for long runs' charts."""
    n = len(x)
    if n <= max_points:
        return list(x), {k: list(v) for k, v in ys.items()}
    idx = np.unique(np.r_[np.linspace(0, n - 1, max_points).round().astype(int), n - 1])
    return [x[i] for i in idx], {k: [v[i] for i in idx] for k, v in ys.items()}


def moving_average(values: Sequence[float | None], window: int) -> list[float | None]:
    """Trailing mean over the last ``window`` finite values (None where no finite value has been seen yet)."""
    out: list[float | None] = []
    buf: list[float] = []
    for v in values:
        if v is not None and np.isfinite(v):
            buf.append(float(v))
            if len(buf) > window:
                buf.pop(0)
        out.append(float(np.mean(buf)) if buf else None)
    return out


def group_series(columns: Mapping[str, Sequence], exclude: Sequence[str] = TRAINER_COLUMNS) -> dict[str, list[str]]:
    """Group a method's logged columns by the name before the first underscore, for one chart per group.

    ``tau_nat, tau_adv, w_nat, w_adv, H_nat, H_adv, loss_nat, loss_adv`` -> ``{"tau": [...], "w": [...],
    "H": [...], "loss": [...]}``; TRADES's ``ce, kl_robust`` -> ``{"ce": ["ce"], "kl": ["kl_robust"]}``.
    Left out: columns in ``exclude``, ``user_*`` flags, columns with no value, and a column equal to
    ``loss`` at every step (the standard method's ``ce`` would repeat the loss curve).
    """
    loss = list(columns.get("loss", []))
    groups: dict[str, list[str]] = {}
    for name, values in columns.items():
        if name in exclude or name.startswith("user_") or all(v is None for v in values):
            continue
        if loss and len(values) == len(loss) and all(
                a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
                for a, b in zip(values, loss)):
            continue
        groups.setdefault(name.split("_", 1)[0], []).append(name)
    return groups


def switch_points(x: Sequence, flags: Sequence[float | None]) -> list[tuple[float, bool]]:
    """Where a 0/1 flag column changes: ``(x, True)`` where it turns on, ``(x, False)`` where it turns off.

    Used to mark on a chart where the user took over a quantity (MTARD's ``user_tau_adv``) and
    where they handed it back. A flag already on at the first point counts as turning on there.
    """
    out: list[tuple[float, bool]] = []
    prev = False
    for xi, f in zip(x, flags):
        on = bool(f)
        if f is None:
            continue
        if on != prev:
            out.append((xi, on))
        prev = on
    return out


def loss_figure(steps: Mapping[str, Sequence], title: str = "Training loss", smooth: int = 20,
                height: int = 300) -> go.Figure:
    """Loss per optimiser step (faint) and its trailing moving average over ``smooth`` steps."""
    x, cols = downsample(steps.get("step", []), {"loss": steps.get("loss", [])})
    fig = go.Figure()
    mode = "lines+markers" if len(x) <= FEW_POINTS else "lines"
    fig.add_trace(go.Scatter(x=x, y=cols["loss"], mode=mode, name="loss per step",
                             line=dict(color=PALETTE[0], width=1), opacity=0.35))
    if smooth > 1:
        avg = moving_average(steps.get("loss", []), smooth)
        _, a = downsample(steps.get("step", []), {"avg": avg})
        fig.add_trace(go.Scatter(x=x, y=a["avg"], mode="lines", name=f"mean of last {smooth}",
                                 line=dict(color=PALETTE[0], width=2.5)))
    fig.update_xaxes(title="step")
    fig.update_yaxes(title="loss")
    return _legend_right(base_layout(fig, title, height))


def accuracy_figure(evals: Mapping[str, Sequence], title: str = "Test accuracy", x: str = "epoch",
                    columns: Sequence[str] = ("test_accuracy",), epochs: int | None = None,
                    height: int = 300) -> go.Figure:
    """Accuracy columns (fractions) per epoch (or ``x``), in percent, markers on each evaluation.

    ``epochs`` (the planned number) fixes the x range, so a live chart does not rescale; with no
    evaluation yet the chart says when the first one comes.
    """
    fig = go.Figure()
    xs = list(evals.get(x, []))
    for i, col in enumerate(columns):
        ys = evals.get(col) or []
        fig.add_trace(go.Scatter(x=xs, y=[None if v is None else 100 * v for v in ys],
                                 mode="lines+markers", name=col.replace("_", " "),
                                 line=dict(color=PALETTE[(2 + i) % len(PALETTE)], width=2.5)))
    if not xs:
        fig.add_annotation(text="measured at the end of each epoch", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper", font=dict(color="#888"))
    last = max([*xs, epochs or 0, 1])
    fig.update_xaxes(title=x, range=[0.5, last + 0.5], dtick=1 if last <= 20 else None)
    fig.update_yaxes(title="accuracy (%)", range=[0, 101])
    return base_layout(fig, title, height)


def series_figure(x: Sequence, series: Mapping[str, Sequence], title: str = "", y_title: str = "",
                  markers: Sequence[tuple[float, str]] = (), height: int = 280,
                  colors: Mapping[str, str] | None = None) -> go.Figure:
    """Several series over the same x (e.g. tau_nat and tau_adv per step), with optional vertical markers.

    ``markers`` are ``(x, label)`` pairs drawn as dotted vertical lines with the label on top
    (where the user took over a value or handed it back).
    """
    xs, cols = downsample(list(x), {k: list(v) for k, v in series.items()})
    fig = go.Figure()
    for i, (name, ys) in enumerate(cols.items()):
        color = (colors or {}).get(name, PALETTE[i % len(PALETTE)])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) <= FEW_POINTS else "lines", name=name,
                                 line=dict(color=color, width=2), marker=dict(size=5)))
    for xm, label in markers:
        fig.add_vline(x=xm, line=dict(color="#666", dash="dot", width=1.5), annotation_text=label,
                      annotation_position="top left", annotation_font_size=10)
    fig.update_xaxes(title="step")
    fig.update_yaxes(title=y_title or None)
    return _legend_right(base_layout(fig, title, height))


def epoch_metrics_columns(records: Sequence[Mapping]) -> dict[str, list]:
    """Columns from a run's metrics.jsonl records (one per epoch); a missing value is None."""
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k not in keys]
    return {k: [r.get(k) for r in records] for k in keys}


def run_curves_figure(records: Sequence[Mapping], title: str = "", height: int = 300) -> go.Figure:
    """A saved run's per-epoch train loss (left axis) and test accuracy in percent (right axis)."""
    cols = epoch_metrics_columns(records)
    epochs = cols.get("epoch", list(range(1, len(records) + 1)))
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=epochs, y=cols.get("train_loss", []), mode="lines+markers", name="train loss",
                             line=dict(color=PALETTE[0], width=2)))
    acc = cols.get("test_accuracy") or []
    fig.add_trace(go.Scatter(x=epochs, y=[None if v is None else 100 * v for v in acc], mode="lines+markers",
                             name="test accuracy (%)", yaxis="y2", line=dict(color=PALETTE[2], width=2)))
    fig.update_layout(yaxis=dict(title="train loss"),
                      yaxis2=dict(title="test accuracy (%)", overlaying="y", side="right", rangemode="tozero"))
    fig.update_xaxes(title="epoch")
    return _legend_right(base_layout(fig, title, height))


def comparison_figure(rows: Sequence[Mapping], title: str = "", height: int = 340) -> go.Figure:
    """Grouped bars of clean, robust and W-Robust accuracy (fractions, shown in %) per model.

    ``rows``: dicts with ``name``, ``clean``, ``robust`` (None allowed) and optionally
    ``w_robust`` (computed as (clean + robust) / 2 when absent, MTARD's metric).
    """
    names = [r["name"] for r in rows]
    fig = go.Figure()
    metrics = (("clean", "clean", PALETTE[0]), ("robust", "robust (AutoAttack)", PALETTE[3]),
               ("w_robust", "W-Robust", PALETTE[2]))
    for key, label, color in metrics:
        ys = []
        for r in rows:
            v = r.get(key)
            if key == "w_robust" and v is None and r.get("clean") is not None and r.get("robust") is not None:
                v = (r["clean"] + r["robust"]) / 2
            ys.append(None if v is None else 100 * v)
        fig.add_trace(go.Bar(x=names, y=ys, name=label, marker_color=color,
                             text=[None if v is None else f"{v:.1f}" for v in ys], textposition="outside",
                             hovertemplate="%{x}<br>" + label + " %{y:.1f} %<extra></extra>"))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="accuracy (%)", range=[0, 105])
    return base_layout(fig, title, height)


# The rule that sets each live-tunable quantity of MTARD while the user does not (for the chart's markers).
MTARD_RULES = {"tau_nat": "EBB", "tau_adv": "EBB", "w_nat": "NLB", "w_adv": "NLB"}


def mtard_live_figures(steps: Mapping[str, Sequence]) -> dict[str, go.Figure]:
    """The Multi-teacher page's live charts of an MTARD run, from its per-step columns (``job.series()["steps"]``).

    Returns ``{"tau", "w", "H", "loss"[, "eps"]}`` figures: the temperatures (EBB), the weights
    (NLB), the teachers' entropies at their tau, the two KL terms, and the student's eps when it
    was logged. Where the user took a quantity over or handed it back (``user_*`` columns), a
    marker says "you: tau_adv" / "EBB again". Empty dict before the first MTARD step.
    """
    if not steps.get("step") or "tau_nat" not in steps:
        return {}
    x = steps["step"]

    def marks(names: Sequence[str]) -> list[tuple[float, str]]:
        return [(xm, f"you: {n}" if on else f"{MTARD_RULES[n]} again")
                for n in names for xm, on in switch_points(x, steps.get(f"user_{n}", []))]

    def pair(a: str, b: str) -> dict[str, Sequence]:
        return {a: steps[a], b: steps[b]}

    figs = {"tau": series_figure(x, pair("tau_nat", "tau_adv"), "Temperatures (EBB)", "tau",
                                 markers=marks(["tau_nat", "tau_adv"])),
            "w": series_figure(x, pair("w_nat", "w_adv"), "Weights (NLB)", "w", markers=marks(["w_adv"])),
            "H": series_figure(x, pair("H_nat", "H_adv"), "Teacher entropies at their tau", "mean entropy (nats)",
                               markers=marks(["tau_nat", "tau_adv"])),
            "loss": series_figure(x, pair("loss_nat", "loss_adv"), "The two KL terms", "KL", markers=marks(["w_adv"]))}
    if "eps" in steps:
        figs["eps"] = series_figure(x, {"eps": steps["eps"]}, "The student's attack budget (eps warm-up)", "eps")
    return figs
