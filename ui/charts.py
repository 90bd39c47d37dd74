"""Charts on a page: every plotly figure is shown through :func:`show_chart`, so every one exports for slides.

Two ways out of a chart, both named after the page and its setup (``attack-lab_pgd_eps0.30_zoo-standard``):

- PNG: the camera icon of the chart's toolbar (plotly's modebar, in the browser) saves the chart as
  drawn, at ``PNG_SCALE`` times its size on screen. It needs nothing on the server and always works.
- SVG: the button under the chart. The browser's toolbar saves one format only, so the SVG is made
  on the server by plotly with kaleido, and only when the button is clicked (Streamlit's deferred
  download), never on a rerun. kaleido draws with a Chrome or Chromium it finds on the machine; where
  there is none the button is greyed out and its tooltip says so in one sentence.

Live charts (redrawn every second while a job runs) pass ``svg=False`` until the job has ended.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import plotly.graph_objects as go
import streamlit as st

from distill_core.runs import safe_name

PNG_SCALE = 3            # a 700-pixel chart saves as 2100 pixels: sharp on a projected or 4K slide
SVG_WIDTH = 1000         # pixels, when the figure sets no width (plotly's default, 700, squeezes wide charts)
_MAX_NAME = 120          # characters of a file name stem


def chart_file_name(*parts: object) -> str:
    """A file name stem from the page and its setup: safe characters only, the parts joined by ``_``.

    Each part is written with ``str``; runs of characters outside ``[A-Za-z0-9._-]`` become ``-`` and
    the part's ends lose ``-``, ``.`` and ``_``; empty parts are dropped. At most 120 characters;
    ``"chart"`` when nothing is left. Example: ``chart_file_name("attack-lab", "pgd", "eps0.30",
    "zoo/standard")`` is ``"attack-lab_pgd_eps0.30_zoo-standard"``.
    """
    return safe_name("_".join(c for c in map(safe_name, parts) if c), _MAX_NAME) or "chart"


def chart_config(name: str) -> dict:
    """The plotly config a chart is shown with: the camera icon saves ``<name>.png`` at ``PNG_SCALE`` x."""
    return {"toImageButtonOptions": {"format": "png", "scale": PNG_SCALE, "filename": name}, "displaylogo": False}


@functools.cache
def svg_unavailable() -> str | None:
    """Why this machine cannot make an SVG, in one sentence; ``None`` when it can. Looked up once per process.

    kaleido (plotly's exporter) starts a headless Chrome or Chromium to draw the figure. It is asked
    where one is (``BROWSER_PATH``, the ``PATH``, the usual install folders, a copy kaleido fetched)
    without starting it.
    """
    try:
        import kaleido  # noqa: F401 - plotly's to_image needs it
        from choreographer.browsers.chromium import Chromium
    except ImportError:
        return ("SVG export needs the kaleido package (pip install -r requirements.txt); the camera icon on the "
                "chart saves a PNG.")
    try:
        found = Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 - another choreographer version: say SVG is off rather than break every chart
        found = None
    if found is None:
        return ("SVG export needs Chrome or Chromium on the machine running the lab (kaleido draws with it) and "
                "none was found; the camera icon on the chart saves a PNG.")
    return None


def svg_bytes(fig: go.Figure) -> bytes:
    """``fig`` as an SVG file (kaleido; a second or two, most of it starting the browser)."""
    return fig.to_image(format="svg", width=fig.layout.width or SVG_WIDTH)


def show_chart(fig: go.Figure, name: str | Sequence[object], *, key: str, container=st, svg: bool = True,
               **kwargs) -> None:
    """Show ``fig`` with the lab's export: the camera icon saves a PNG at ``PNG_SCALE`` x, the button under it an SVG.

    ``name``: the file name stem, or its parts (the page's URL path, then the setup), cleaned by
    :func:`chart_file_name`. ``key``: the chart's widget key (the SVG button's is ``<key>_svg``).
    ``container``: where to draw (``st``, a column, ...). ``svg=False`` leaves the SVG button out, for a
    chart redrawn every second. Other keyword arguments go to ``st.plotly_chart``.
    """
    stem = chart_file_name(*([name] if isinstance(name, str) else name))
    container.plotly_chart(fig, key=key, config=chart_config(stem), **kwargs)
    if not svg:
        return
    problem = svg_unavailable()
    container.download_button(
        "SVG", data=lambda: svg_bytes(fig), file_name=f"{stem}.svg", mime="image/svg+xml", key=f"{key}_svg",
        on_click="ignore", type="tertiary", icon=":material/download:", disabled=problem is not None,
        help=problem or f"Save this chart as `{stem}.svg`, a vector copy for slides (made when you click).")
