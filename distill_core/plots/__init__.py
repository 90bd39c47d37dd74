"""Figures as pure functions returning plotly figures (no streamlit), one module per topic.

Each function takes plain arrays / dicts computed by the core and returns a ``go.Figure``,
so a page only places it and a test can check the figure's data.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

# Set once: passing template= per figure costs ~35 ms a figure (the template is re-validated).
pio.templates.default = "plotly_white"

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC",
           "#EECA3B")
METHOD_COLORS = {"standard": "#4C78A8", "defensive": "#9D755D", "kd": "#72B7B2", "bss": "#54A24B",
                 "pgd_at": "#B279A2", "trades": "#E45756", "ard": "#F58518", "rslad": "#EECA3B",
                 "mtard": "#FF9DA6"}


def base_layout(fig: go.Figure, title: str = "", height: int = 360, **kwargs) -> go.Figure:
    """The lab's common look: compact margins, legend on top, stable zoom across redraws."""
    # With a title the legend goes to the right (a horizontal legend on top would overlap it).
    legend = dict(orientation="v", x=1.02, y=1) if title else dict(orientation="h", yanchor="bottom", y=1.02, x=0)
    fig.update_layout(title=title or None, height=height, margin=dict(l=10, r=10, t=50 if title else 30, b=10),
                      legend=legend, uirevision="keep", **kwargs)
    return fig


def method_color(method: str) -> str:
    return METHOD_COLORS.get(method, PALETTE[hash(method) % len(PALETTE)])
