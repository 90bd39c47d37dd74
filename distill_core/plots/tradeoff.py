"""The accuracy-robustness trade-off: clean vs robust accuracy with the Pareto front."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from . import base_layout, method_color, method_symbol


def pareto_front(clean: Sequence[float], robust: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both axes, sorted by clean accuracy.

    A point is dominated when another is at least as good on both axes and better on one.
    """
    c, r = np.asarray(clean, dtype=float), np.asarray(robust, dtype=float)
    front = []
    for i in range(len(c)):
        dominated = np.any((c >= c[i]) & (r >= r[i]) & ((c > c[i]) | (r > r[i])))
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (c[i], -r[i]))


_POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right", "bottom left", "top left",
              "bottom right")


def label_positions(x: Sequence[float], y: Sequence[float], texts: Sequence[str], x_span: float = 100.0,
                    y_span: float = 100.0) -> list[str]:
    """A plotly ``textposition`` per point so that labels overlap as little as possible.

    Greedy: points are placed from the top; each takes the first of eight positions around it
    whose label box (about 0.85 % of ``x_span`` per character wide, 4 % of ``y_span`` high, in
    axis units) overlaps no label placed before and no other point; the least crowded one when
    all do. Coordinates in the axes' units.
    """
    w_char, h = 0.0085 * x_span, 0.04 * y_span
    placed: list[tuple[float, float, float, float]] = []
    points = list(zip(x, y))
    out = [""] * len(points)

    def box(i: int, pos: str) -> tuple[float, float, float, float]:
        w = w_char * max(len(texts[i]), 1)
        vert, horiz = pos.split()
        cx = x[i] + {"center": 0.0, "right": w / 2 + 0.01 * x_span, "left": -w / 2 - 0.01 * x_span}[horiz]
        cy = y[i] + {"top": 0.6 * h, "bottom": -0.6 * h, "middle": 0.0}[vert]
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    def clashes(b: tuple[float, float, float, float], me: int) -> int:
        n = sum(b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3] for o in placed)
        return n + sum(b[0] < px < b[2] and b[1] < py < b[3] for j, (px, py) in enumerate(points) if j != me)

    for i in sorted(range(len(points)), key=lambda i: (-y[i], x[i])):
        best = min(_POSITIONS, key=lambda pos: (clashes(box(i, pos), i), _POSITIONS.index(pos)))
        out[i] = best
        placed.append(box(i, best))
    return out


def _knob_label(knob: str, value) -> str:
    return f"{knob}={value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else f"{knob}={value}"


def tradeoff_figure(rows: Sequence[dict], title: str = "", height: int = 420, curves: Sequence[dict] = (),
                    apparent: bool = False) -> go.Figure:
    """Scatter of ``rows`` (dicts with name, method, clean, robust), one colour and one symbol per method, Pareto front.

    Accuracies are fractions in [0, 1]; axes show percent; ``robust`` is the true (AutoAttack)
    robust accuracy. Methods differ by marker symbol as well as colour (``METHOD_SYMBOLS``; the
    colours' grey levels differ too), so the figure reads when printed in grey. A row may carry
    ``source``: points from ``"runs"`` get a dark outline and a dot in the middle, the others (the
    zoo) are plain. A row with ``gap_shown`` true (apparent above true by more
    than 10 points) and an ``apparent`` (PGD-CE) robust accuracy also gets a hollow marker at the
    apparent position and a line down to the true one: a dotted line and an open circle labelled
    "gradient masking" when the row is ``masked`` (AutoAttack's checks fired: the Carlini & Wagner
    lesson), a dashed line and an open diamond labelled as a weaker attack's overstatement when
    not. The Pareto front uses the true numbers only. Rows without a robust accuracy are left out.
    Points are labelled with ``label`` (default ``name``), placed so that labels overlap little;
    the clean-accuracy axis spans the points shown (not 0-100), so one weak model does not squeeze
    the others.

    ``curves``: sweeps of one knob (``lab.sweeps.sweep_curves``), each a dict with ``id``,
    ``method``, ``knob`` and ``points`` (dicts with ``value``, ``clean``, ``robust``, ``apparent``),
    drawn as a line through the points in knob order, each point labelled ``knob=value``. With
    ``apparent`` the y axis is the naive PGD-CE robust accuracy instead of AutoAttack's, for rows
    and curves alike (no masking-gap markers, and no Pareto front: a front of apparent numbers would
    crown masked models): a masked sweep rises there while its true curve stays at the floor. The
    Pareto front (true numbers) is over everything drawn. A curve's markers are its method's
    symbol; curves of one method differ by dash.
    """
    fig = go.Figure()
    key = "apparent" if apparent else "robust"
    rows = [{**r, "robust": r.get(key)} for r in rows if r.get("clean") is not None and r.get(key) is not None]
    gaps = [] if apparent else [r for r in rows if r.get("gap_shown") and r.get("apparent") is not None]
    for kind, label, dash in (("masking", "PGD-CE: masked", "dot"), ("overstated", "PGD-CE: overstated", "dash")):
        group = [r for r in gaps if bool(r.get("masked")) == (kind == "masking")]
        for i, r in enumerate(group):
            x, y0, y1 = 100 * r["clean"], 100 * r["apparent"], 100 * r["robust"]
            fig.add_trace(go.Scatter(
                x=[x, x], y=[y0, y1], mode="lines", line=dict(color="#888", dash=dash, width=1.5),
                name=label, legendgroup=kind, showlegend=False, hoverinfo="skip"))
            fig.add_trace(go.Scatter(
                x=[x], y=[y0], mode="markers", name=label, legendgroup=kind, showlegend=i == 0,
                text=[r.get("label") or r["name"]],
                marker=dict(size=11, symbol="circle-open" if kind == "masking" else "diamond-open",
                            color=method_color(r["method"]), line=dict(width=2)),
                hovertemplate="%{text}: apparent robustness under PGD-CE %{y:.1f} %<br>true (AutoAttack) "
                              f"{y1:.1f} %<br>" + ("gradient masking" if kind == "masking" else
                                                  "a single attack overstating robustness") + "<extra></extra>"))
    names = [r.get("label") or r["name"] for r in rows]
    xs, ys = [100 * r["clean"] for r in rows], [100 * r["robust"] for r in rows]
    on_curves = [100 * p["clean"] for c in curves for p in c["points"]
                 if p.get("clean") is not None and p.get(key) is not None]
    lo = min([*xs, *on_curves], default=0.0)          # the clean axis spans every point drawn (gaps share x)
    x_range = [max(0.0, lo - max(4.0, 0.08 * (100 - lo))), 101.0]
    where = dict(zip((id(r) for r in rows), label_positions(xs, ys, names, x_span=x_range[1] - x_range[0])))
    for method in sorted({r["method"] for r in rows}):
        pts, symbol = [r for r in rows if r["method"] == method], method_symbol(method)
        fig.add_trace(go.Scatter(
            x=[100 * p["clean"] for p in pts], y=[100 * p["robust"] for p in pts], mode="markers+text",
            name=method, text=[p.get("label") or p["name"] for p in pts], textposition=[where[id(p)] for p in pts],
            textfont=dict(size=10),
            marker=dict(size=12, color=method_color(method),
                        symbol=[symbol + "-dot" if p.get("source") == "runs" else symbol for p in pts],
                        line=dict(width=[2 if p.get("source") == "runs" else 1 for p in pts],
                                  color=["#222" if p.get("source") == "runs" else "white" for p in pts])),
            hovertemplate="%{text}<br>clean %{x:.1f} %<br>robust %{y:.1f} %<extra>" + method + "</extra>"))
    drawn = list(rows)
    dashes = ("solid", "dot", "dashdot", "longdash")
    seen: dict[str, int] = {}
    for c in curves:
        dash = dashes[seen.get(c["method"], 0) % len(dashes)]
        seen[c["method"]] = seen.get(c["method"], 0) + 1
        pts = [p for p in c["points"] if p.get("clean") is not None and p.get(key) is not None]
        if all(isinstance(p.get("value"), (int, float)) for p in pts):
            pts.sort(key=lambda p: p["value"])                  # knob order
        if not pts:
            continue
        drawn += [{"clean": p["clean"], "robust": p[key]} for p in pts]
        fig.add_trace(go.Scatter(
            x=[100 * p["clean"] for p in pts], y=[100 * p[key] for p in pts], mode="lines+markers+text",
            name=f"{c['method']}: {c['knob']} sweep", text=[p.get("label") or _knob_label(c["knob"], p["value"])
                                                            for p in pts],
            textposition="bottom right", textfont=dict(size=9, color=method_color(c["method"])),
            line=dict(color=method_color(c["method"]), width=2, dash=dash),
            marker=dict(size=8, symbol=method_symbol(c["method"])),
            hovertemplate=f"{c['method']}, {c['knob']}=" + "%{text}<br>clean %{x:.1f} %<br>robust %{y:.1f} %"
                          "<extra></extra>"))
    if drawn and not apparent:
        idx = pareto_front([r["clean"] for r in drawn], [r["robust"] for r in drawn])
        fig.add_trace(go.Scatter(x=[100 * drawn[i]["clean"] for i in idx], y=[100 * drawn[i]["robust"] for i in idx],
                                 mode="lines", name="Pareto front", line=dict(color="#444", dash="dash", width=1.5),
                                 hoverinfo="skip"))
    fig.update_xaxes(title="clean accuracy (%)", range=x_range if drawn else None)
    fig.update_yaxes(title=("apparent robust accuracy, PGD-CE (%)" if apparent else "robust accuracy (%)"))
    return base_layout(fig, title, height)
