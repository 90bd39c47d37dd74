"""AppTest: the router and the home page."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_app_routes_and_home_renders_the_tradeoff_picture():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Robust Distillation Lab"
    charts = at.get("plotly_chart")
    assert len(charts) >= 4      # trade-off picture + three dataset previews
    traces = json.loads(charts[0].proto.spec)["data"]
    names = [t.get("name") for t in traces]
    assert "Pareto front" in names and "mtard" in names
    png = json.loads(charts[0].proto.config)["toImageButtonOptions"]     # the camera icon: a PNG for slides
    assert png["format"] == "png" and png["scale"] >= 2 and png["filename"].startswith("home_tradeoff_")
    # defensive-T100: its apparent (PGD-CE) point is drawn apart from its true (AutoAttack) one, as masked.
    masked = [t for t in traces if t.get("name") == "PGD-CE: masked" and t.get("mode") == "markers"]
    assert any(t.get("text") == ["defensive-T100"] for t in masked)
    assert any("AutoAttack" in c.value for c in at.caption)


def test_sidebar_dataset_choice_changes_the_home_picture():
    at = AppTest.from_file(APP, default_timeout=120).run()
    before = at.get("plotly_chart")[0].proto.spec
    at.sidebar.selectbox(key="dataset").set_value("moons").run()
    assert not at.exception
    after = at.get("plotly_chart")[0].proto.spec
    assert before != after and "moons" in after
