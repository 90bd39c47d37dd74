"""AppTest: the Temperature page renders, and moving T changes the bars (and only the bars at T)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from distill_core import zoo
from tests._apptest import ROOT, chart, require_zoo, values

PAGE = str(ROOT / "pages" / "temperature_page.py")
NEEDED = {"mnist-5k/standard", "mnist-5k/trades"}
require_zoo(*NEEDED)


def test_moving_t_changes_the_bars_at_t_only() -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert not at.error
    bars = chart(at, "temp_bars")
    assert [t["name"] for t in bars["data"]] == ["T = 10", "T = 1 (deployed)"]
    p10, p1 = values(bars["data"][0]["y"]), values(bars["data"][1]["y"])
    assert p10.sum() == pytest.approx(1, abs=1e-5) and p1.sum() == pytest.approx(1, abs=1e-5)
    assert p10.max() < p1.max()                       # T = 10 is softer than T = 1
    entropy_before = chart(at, "temp_entropy")["data"][1]

    at.select_slider(key="temp_T").set_value(0.1).run()
    assert not at.exception, at.exception
    bars = chart(at, "temp_bars")
    assert bars["data"][0]["name"] == "T = 0.1"
    p01 = values(bars["data"][0]["y"])
    assert not np.allclose(p01, p10)
    assert p01.max() == pytest.approx(1.0, abs=1e-6)  # T = 0.1 is one-hot
    np.testing.assert_allclose(values(bars["data"][1]["y"]), p1)
    assert chart(at, "temp_entropy")["data"][1] != entropy_before

    at.select_slider(key="temp_T").set_value(1.0).run()
    bars = chart(at, "temp_bars")
    np.testing.assert_allclose(values(bars["data"][0]["y"]), values(bars["data"][1]["y"]))


def test_other_image_jacobian_and_ebb() -> None:
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    jac = chart(at, "temp_jacobian")
    assert any(t.get("name") == "1 / T" for t in jac["data"])
    assert chart(at, "temp_ebb_sim")["data"]
    assert any("matches it at" in c.value for c in at.caption)
    before = chart(at, "temp_bars")["data"][1]
    at.number_input(key="temp_index").set_value(7).run()
    assert not at.exception, at.exception
    assert chart(at, "temp_bars")["data"][1] != before


def test_defensive_model_shows_masked_gradient_at_t1() -> None:
    if "mnist-5k/defensive-T100" not in {m["name"] for m in zoo.list_zoo()}:
        pytest.skip("needs zoo: defensive-T100")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at.selectbox(key="temp_model").set_value("zoo: defensive-T100").run()
    assert not at.exception, at.exception
    jac = chart(at, "temp_jacobian")
    assert any(t.get("name") == "exactly 0 in float32 (masked)" for t in jac["data"])
    assert any("exactly 0 in float32" in c.value for c in at.caption)


def test_missing_zoo_is_a_message_not_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("No model" in w.value for w in at.warning)


@pytest.mark.parametrize("name", ["moons", "digits"])
def test_other_datasets(name: str) -> None:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["dataset"] = name
    at.run()
    assert not at.exception, at.exception
    assert at.get("plotly_chart") or at.warning          # 2-D points work; no model yet is a message
