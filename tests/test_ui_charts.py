"""Every chart exports for slides: named after its page and setup, a PNG at slide scale, an SVG made on click."""

from __future__ import annotations

import json
import re
from pathlib import Path

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from ui import charts
from ui.charts import PNG_SCALE, chart_config, chart_file_name, svg_bytes

ROOT = Path(__file__).resolve().parents[1]


def test_file_names_keep_safe_characters_only():
    assert chart_file_name("attack-lab", "pgd", "eps0.30", "zoo: standard") == "attack-lab_pgd_eps0.30_zoo-standard"
    assert chart_file_name("temperature", "T5.0") == "temperature_T5.0"
    assert chart_file_name("train", "mtard · mnist-5k · small-cnn", "", "loss") == "train_mtard-mnist-5k-small-cnn_loss"
    assert chart_file_name("defensive", "T=20 (student)/../x") == "defensive_T-20-student-..-x"   # no path separator
    assert re.fullmatch(r"[A-Za-z0-9._-]+", chart_file_name("ünïcode ✓", "100 %", 0.5))
    assert len(chart_file_name("x" * 500, "y")) == 120
    assert chart_file_name() == chart_file_name("", "...", " ") == "chart"


def test_the_camera_saves_a_png_at_slide_scale_named_after_the_chart():
    assert PNG_SCALE >= 2
    assert chart_config("home_tradeoff_mnist-5k")["toImageButtonOptions"] == {
        "format": "png", "scale": PNG_SCALE, "filename": "home_tradeoff_mnist-5k"}


def _page():
    import plotly.graph_objects as go
    import streamlit as st

    from ui.charts import show_chart

    left, _ = st.columns(2)
    show_chart(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), ("attack-lab", "pgd", "zoo: standard"), key="c",
               container=left)
    show_chart(go.Figure(), "live", key="live", svg=False)


@pytest.fixture
def fresh_svg_check():
    charts.svg_unavailable.cache_clear()
    yield
    charts.svg_unavailable.cache_clear()


def test_show_chart_passes_the_config_and_makes_the_svg_only_on_click(monkeypatch):
    monkeypatch.setattr(charts, "svg_unavailable", lambda: None)
    at = AppTest.from_function(_page).run()
    assert not at.exception, at.exception
    chart, live = at.get("plotly_chart")
    assert json.loads(chart.proto.config)["toImageButtonOptions"]["filename"] == "attack-lab_pgd_zoo-standard"
    assert json.loads(live.proto.config)["toImageButtonOptions"]["filename"] == "live"
    [button] = at.get("download_button")                        # none for the live chart
    assert button.proto.deferred_file_id and not button.proto.url and not button.proto.disabled  # nothing made yet
    assert button.proto.ignore_rerun                            # a click does not rerun the page


def test_without_a_browser_the_svg_button_says_why_in_one_sentence(monkeypatch, fresh_svg_check):
    from choreographer.browsers.chromium import Chromium

    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kwargs: None))
    at = AppTest.from_function(_page).run()
    assert not at.exception, at.exception
    [button] = at.get("download_button")
    assert button.proto.disabled and "Chrome or Chromium" in button.proto.help and "PNG" in button.proto.help
    assert button.proto.help.count(". ") == 0


@pytest.mark.skipif(charts.svg_unavailable() is not None, reason="no Chrome / Chromium for kaleido here")
def test_svg_export_works_offline_with_the_machines_browser():
    svg = svg_bytes(go.Figure(go.Scatter(x=[0, 1], y=[1, 0], name="kd"), layout={"height": 300}))
    assert svg.startswith(b"<svg") and b'width="1000"' in svg


def test_no_page_shows_a_chart_without_the_export():
    files = [*sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py")), ROOT / "app.py"]
    bare = [f"{p.relative_to(ROOT)}:{i}" for p in files if p.name != "charts.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if "plotly_chart(" in line]
    assert not bare, f"use ui.charts.show_chart instead of st.plotly_chart: {bare}"
