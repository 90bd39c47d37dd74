"""AppTest: the Sensitivity page renders its histograms; softmax vs logits changes them; masking is counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import zoo
from tests._apptest import ROOT, chart, require_zoo, values

PAGE = str(ROOT / "pages" / "sensitivity_page.py")
NEEDED = {"mnist-5k/standard", "mnist-5k/defensive-T100"}
require_zoo(*NEEDED)


def zero_counts(spec: dict) -> dict[str, int]:
    """Model -> exactly-zero count, from the histogram figure's right-hand panel."""
    return {t["x"][0]: int(values(t["y"])[0]) for t in spec["data"] if t.get("xaxis") == "x2"}


def test_histograms_toggle_and_zero_counts() -> None:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["sens_models"] = ["zoo: standard", "zoo: defensive-T100"]
    at.session_state["sens_n"] = 32
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    soft = chart(at, "sens_hist")
    assert "d softmax / dx" in soft["layout"]["xaxis"]["title"]["text"]
    zeros = zero_counts(soft)
    assert zeros["zoo: defensive-T100"] > zeros["zoo: standard"] == 0   # the masked model's softmax underflows
    assert chart(at, "sens_gallery")["data"] and chart(at, "sens_slice")["data"]

    at.radio(key="sens_wrt").set_value("logits").run()
    assert not at.exception, at.exception
    logits = chart(at, "sens_hist")
    assert logits["data"] != soft["data"]
    assert "d logits / dx" in logits["layout"]["xaxis"]["title"]["text"]
    assert set(zero_counts(logits).values()) == {0}                      # the logit gradient is never masked
    table = at.dataframe[0].value
    assert list(table["zero gradients"]) == ["0 / 32", "0 / 32"]


def test_slice_and_gallery_follow_their_controls() -> None:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["sens_models"] = ["zoo: standard"]
    at.session_state["sens_n"] = 32
    at.run()
    before = chart(at, "sens_slice")["data"][0]
    at.slider(key="sens_radius").set_value(0.2).run()
    assert not at.exception, at.exception
    assert chart(at, "sens_slice")["data"][0] != before
    gallery = chart(at, "sens_gallery")["layout"]["annotations"]
    at.number_input(key="sens_index").set_value(10).run()
    assert chart(at, "sens_gallery")["layout"]["annotations"] != gallery


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
    at.session_state["sens_n"] = 32
    at.run()
    assert not at.exception, at.exception
    assert at.get("plotly_chart") or at.warning
