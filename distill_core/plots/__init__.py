"""Figures as pure functions returning plotly figures (no streamlit), one module per topic.

Each function takes plain arrays / dicts computed by the core and returns a ``go.Figure``,
so a page only places it and a test can check the figure's data.
"""

from __future__ import annotations

import zlib

import plotly.graph_objects as go
import plotly.io as pio

# Set once: passing template= per figure costs ~35 ms a figure (the template is re-validated).
pio.templates.default = "plotly_white"

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC",
           "#EECA3B")
# Each method has its own colour and its own marker symbol, so a figure printed in grey still tells them apart.
# The colours keep the hues of the palette above, darkened or lightened so that their grey levels (ITU-R 601 luma,
# what a greyscale print or PIL's convert("L") gives) are spread 52 ... 184 out of 255, 16 or more apart, the
# lightest still well off the white background.
METHOD_COLORS = {"standard": "#163678", "defensive": "#553F32", "bss": "#376B32", "trades": "#B34444",
                 "pgd_at": "#936486", "ard": "#D67415", "kd": "#6AABA6", "mtard": "#E48C94", "rslad": "#DFBD37"}
METHOD_SYMBOLS = {"standard": "circle", "defensive": "square", "bss": "triangle-down", "trades": "star",
                  "pgd_at": "pentagon", "ard": "diamond", "kd": "triangle-up", "mtard": "hexagram", "rslad": "cross"}
# For methods the lab does not know (and imported models): every one has a "-dot" variant, which marks a run.
_SPARE_SYMBOLS = ("hexagon", "triangle-left", "triangle-right", "x", "star-diamond", "octagon", "star-square")


def base_layout(fig: go.Figure, title: str = "", height: int = 360, **kwargs) -> go.Figure:
    """The lab's common look: compact margins, legend on top, stable zoom across redraws."""
    # With a title the legend goes to the right (a horizontal legend on top would overlap it).
    legend = dict(orientation="v", x=1.02, y=1) if title else dict(orientation="h", yanchor="bottom", y=1.02, x=0)
    fig.update_layout(title=title or None, height=height, margin=dict(l=10, r=10, t=50 if title else 30, b=10),
                      legend=legend, uirevision="keep", **kwargs)
    return fig


def _stable_index(name: str, n: int) -> int:
    """An index in ``range(n)`` that depends on ``name`` only (``hash`` of a str changes between processes)."""
    return zlib.crc32(name.encode()) % n


def method_color(method: str) -> str:
    """The colour a method is drawn in (a method the lab does not know gets a palette colour, the same every run)."""
    return METHOD_COLORS.get(method, PALETTE[_stable_index(method, len(PALETTE))])


def method_symbol(method: str) -> str:
    """The plotly marker symbol a method is drawn with: its second cue beside the colour, kept in a grey print."""
    return METHOD_SYMBOLS.get(method, _SPARE_SYMBOLS[_stable_index(method, len(_SPARE_SYMBOLS))])
