"""AppTest: the router and the home page."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_app_routes_and_home_renders_the_tradeoff_picture():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Robust Distillation Lab"
    charts = at.get("plotly_chart")
    assert len(charts) >= 4      # trade-off picture + three dataset previews
    spec = charts[0].proto.spec
    assert "Pareto front" in spec and "mtard" in spec
    assert "gradient masking" in spec            # defensive-T100: apparent (PGD-CE) vs true (AutoAttack)
    assert any("AutoAttack" in c.value for c in at.caption)


def test_sidebar_dataset_choice_changes_the_home_picture():
    at = AppTest.from_file(APP, default_timeout=120).run()
    before = at.get("plotly_chart")[0].proto.spec
    at.sidebar.selectbox(key="dataset").set_value("moons").run()
    assert not at.exception
    after = at.get("plotly_chart")[0].proto.spec
    assert before != after and "moons" in after
