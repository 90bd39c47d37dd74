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


def test_settings_survive_leaving_a_page_and_coming_back(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.switch_page(page("train").file).run()
    at.selectbox(key="train_method").set_value("kd").run()
    at.number_input(key="train_epochs").set_value(1).run()
    at.number_input(key="train_lr").set_value(0.002).run()
    at.switch_page(page("temperature").file).run()
    at.switch_page(page("train").file).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_method").value == "kd"
    assert at.number_input(key="train_epochs").value == 1 and at.number_input(key="train_lr").value == 0.002
    # ... and the line above Start says what will be trained
    assert any(c.value.startswith("**Start trains:** kd") and "for 1 epoch(s)" in c.value and "lr 0.002" in c.value
               for c in at.caption)


def test_one_dataset_choice_for_the_sidebar_and_the_pages() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.sidebar.selectbox(key="dataset").set_value("moons").run()
    at.switch_page(page("multi-teacher").file).run()
    assert at.selectbox(key="mt_dataset").value == "moons"             # the page box shows the sidebar's choice
    at.selectbox(key="mt_dataset").set_value("mnist-5k").run()
    assert at.sidebar.selectbox(key="dataset").value == "mnist-5k"     # and changing it changes the sidebar's
    at.switch_page(page("train").file).run()
    assert at.selectbox(key="train_dataset").value == "mnist-5k"


def test_a_dataset_without_models_gives_advice_that_works() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    at.sidebar.selectbox(key="dataset").set_value("digits").run()
    at.switch_page(page("temperature").file).run()
    assert not at.exception, at.exception
    assert any("No model for digits" in w.value and "Train one on the Train page" in w.value for w in at.warning)
    use = next(b for b in at.button if b.label == "Use mnist-5k")
    use.click().run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="dataset").value == "mnist-5k"
    assert not any("No model for" in w.value for w in at.warning)
    assert at.get("plotly_chart")                                       # the page now draws with a zoo model
