"""Robust Distillation Lab: the Streamlit entry point (router, shared sidebar, home page).

    streamlit run app.py
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent

PAGES = [
    # (file, title, icon, url)
    ("pages/home.py", "Home", ":material/home:", "home"),
    ("pages/temperature.py", "Temperature", ":material/thermostat:", "temperature"),
    ("pages/train.py", "Train", ":material/model_training:", "train"),
    ("pages/defensive.py", "Defensive distillation", ":material/shield:", "defensive"),
    ("pages/boundary.py", "Boundary samples", ":material/timeline:", "boundary"),
    ("pages/multi_teacher.py", "Multi-teacher", ":material/groups:", "multi-teacher"),
    ("pages/attack_lab.py", "Attack lab", ":material/bolt:", "attack-lab"),
    ("pages/sensitivity.py", "Sensitivity", ":material/blur_on:", "sensitivity"),
    ("pages/tradeoff.py", "Trade-off", ":material/scatter_plot:", "trade-off"),
]


def main() -> None:
    st.set_page_config(page_title="Robust Distillation Lab", page_icon=":material/science:", layout="wide")
    from ui.common import sidebar

    pages = [st.Page(f, title=t, icon=i, url_path=u, default=(u == "home")) for f, t, i, u in PAGES]
    nav = st.navigation(pages)
    sidebar()
    nav.run()


main()
