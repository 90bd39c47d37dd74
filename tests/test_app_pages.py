"""AppTest: every page runs under the router (app.py), reached the way the sidebar reaches it."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests._apptest import ROOT
from ui.navigation import PAGES, START_HERE, page


@pytest.mark.parametrize("p", PAGES, ids=[p.url_path for p in PAGES])
def test_page_runs_under_the_router(p) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert not at.exception, at.exception
    at.switch_page(p.file).run()
    assert not at.exception, at.exception
    assert at.title, f"{p.title}: no title"
    expected = "Robust Distillation Lab" if p.url_path == "home" else p.title
    assert expected.split()[0].lower() in at.title[0].value.lower(), (at.title[0].value, p.title)


def test_one_page_list() -> None:
    assert len({p.url_path for p in PAGES}) == len(PAGES) and len({p.file for p in PAGES}) == len(PAGES)
    for p in PAGES:
        assert (ROOT / p.file).is_file()
        # Streamlit's legacy pages/ discovery would bypass the router for a stem equal to its URL path.
        assert (ROOT / p.file).stem != p.url_path
    assert set(START_HERE) == {p.url_path for p in PAGES} - {"home"}
    assert all(page(u).blurb for u in START_HERE)
    with pytest.raises(KeyError):
        page("nowhere")


def test_importing_app_runs_nothing(monkeypatch) -> None:
    import importlib
    import sys

    import streamlit as st

    calls = []
    monkeypatch.setattr(st, "navigation", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(st, "set_page_config", lambda *a, **k: calls.append(a))
    monkeypatch.delitem(sys.modules, "app", raising=False)
    app = importlib.import_module("app")     # the router is app.run(), as in Streamlit's own hello app
    assert calls == [] and callable(app.run)
