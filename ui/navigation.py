"""The lab's pages: the one list the router (``app.py``) and the Home page's links read.

Each entry is ``Page(file, title, icon, url_path, blurb)``. File stems differ from URL paths
(``pages/train_page.py`` at ``/train``): with a folder named ``pages/``, Streamlit's legacy
auto-discovery would route a first deep link around ``app.py`` when a stem equals its URL path.
"""

from __future__ import annotations

from typing import NamedTuple


class Page(NamedTuple):
    file: str
    title: str
    icon: str
    url_path: str
    blurb: str        # one line for the Home page's "Where to start" ("" = not listed there)


PAGES: tuple[Page, ...] = (
    Page("pages/home_page.py", "Home", ":material/home:", "home", ""),
    Page("pages/lesson_page.py", "Lesson (45 min)", ":material/school:", "lesson",
         "Lesson: the trade-off in 45 minutes, step by step"),
    Page("pages/temperature_page.py", "Temperature", ":material/thermostat:", "temperature",
         "Temperature: how T reshapes a softmax"),
    Page("pages/train_page.py", "Train", ":material/model_training:", "train", "Train any model with any method"),
    Page("pages/defensive_page.py", "Defensive distillation", ":material/shield:", "defensive",
         "Defensive distillation, and how it is broken"),
    Page("pages/boundary_page.py", "Boundary samples", ":material/timeline:", "boundary",
         "Boundary-supporting samples (BSS)"),
    Page("pages/multi_teacher_page.py", "Multi-teacher", ":material/groups:", "multi-teacher",
         "MTARD: two teachers, tuned live"),
    Page("pages/attack_lab_page.py", "Attack lab", ":material/bolt:", "attack-lab",
         "Attack lab: one image, any attack"),
    Page("pages/sensitivity_page.py", "Sensitivity", ":material/blur_on:", "sensitivity",
         "Sensitivity: gradients and saliency"),
    Page("pages/tradeoff_page.py", "Trade-off", ":material/scatter_plot:", "trade-off",
         "Trade-off: all your runs, Pareto front"),
)

# The order the Home page suggests (teaching first, then research).
START_HERE = ("lesson", "temperature", "defensive", "attack-lab", "boundary", "multi-teacher", "train", "sensitivity",
              "trade-off")


def page(url_path: str) -> Page:
    """The page at ``url_path``; ``KeyError`` for an unknown one."""
    for p in PAGES:
        if p.url_path == url_path:
            return p
    raise KeyError(url_path)


def page_title(url_path: str) -> str:
    """The title of the page at ``url_path`` (the path itself when no page has it)."""
    try:
        return page(url_path).title
    except KeyError:
        return url_path
