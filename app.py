"""Robust Distillation Lab: the Streamlit entry point (router and shared sidebar).

    streamlit run app.py

The router runs from :func:`run`, not on import (as Streamlit's own hello app does), so tests
can import this module; the page list is :data:`ui.navigation.PAGES`.
"""

from __future__ import annotations

import streamlit as st

from ui.navigation import PAGES


def run() -> None:
    """Set up the page, register every page with ``st.navigation``, draw the sidebar, run the chosen page."""
    st.set_page_config(page_title="Robust Distillation Lab", page_icon=":material/science:", layout="wide")
    from ui.common import keep_settings, sidebar
    from ui.url_state import apply_pending

    home = PAGES[0]
    # The default page is served at "/" but reserves its own pathname, which Streamlit then answers with
    # "Page not found"; so it reserves "index", and "/home" (what the sidebar's "Home" suggests) is an unlisted
    # second entry for the same file.
    pages = [st.Page(home.file, title=home.title, icon=home.icon, url_path="index", default=True)]
    pages += [st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path) for p in PAGES[1:]]
    pages.append(st.Page(home.file, title=home.title, icon=home.icon, url_path=home.url_path, visibility="hidden"))
    keep_settings()          # a page's settings survive leaving it and coming back
    nav = st.navigation(pages)
    apply_pending()          # a link's dataset, which its page could not set once the sidebar was drawn
    sidebar()
    nav.run()


if __name__ == "__main__":
    run()
