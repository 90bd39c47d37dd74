"""Robust Distillation Lab: the Streamlit entry point (router, shared sidebar, home page).

    streamlit run app.py
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent

PAGES = [
    # (file, title, icon, url)
    ("views/home.py", "Home", ":material/home:", "home"),
    ("views/temperature.py", "Temperature", ":material/thermostat:", "temperature"),
    ("views/train.py", "Train", ":material/model_training:", "train"),
    ("views/defensive.py", "Defensive distillation", ":material/shield:", "defensive"),
    ("views/boundary.py", "Boundary samples", ":material/timeline:", "boundary"),
    ("views/multi_teacher.py", "Multi-teacher", ":material/groups:", "multi-teacher"),
    ("views/attack_lab.py", "Attack lab", ":material/bolt:", "attack-lab"),
    ("views/sensitivity.py", "Sensitivity", ":material/blur_on:", "sensitivity"),
    ("views/tradeoff.py", "Trade-off", ":material/scatter_plot:", "trade-off"),
]


def main() -> None:
    st.set_page_config(page_title="Robust Distillation Lab", page_icon=":material/science:", layout="wide")
    from ui.common import sidebar

    pages = [st.Page(f, title=t, icon=i, url_path=u, default=(u == "home")) for f, t, i, u in PAGES]
    nav = st.navigation(pages)
    sidebar()
    nav.run()


main()
