"""The boundary-samples page: renders from the zoo; the step slider, the points and the image drive what it draws."""

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from distill_core import zoo
from distill_core.data import load_dataset
from tests._apptest import ROOT, require_zoo

PAGE = str(ROOT / "pages" / "boundary_page.py")
NEEDED = {"moons/teacher", "moons/kd", "moons/bss", "mnist-5k/standard"}
require_zoo(*NEEDED)


def _figures(at: AppTest) -> list[dict]:
    """The page's plotly figures in order: teacher, KD student, BSS student, the image's BSS."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _arr(v) -> list:
    """A plotly JSON array: a list, or numpy data packed as ``{"dtype", "bdata"}`` (base64)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


def _paths(fig: dict) -> list[dict]:
    return [{**t, "x": _arr(t["x"]), "y": _arr(t["y"])} for t in fig["data"]
            if str(t.get("name", "")).startswith("BSS path")]


def test_step_slider_points_and_image_change_what_is_drawn():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    figs = _figures(at)
    assert len(figs) == 4
    paths = _paths(figs[0])
    assert len(paths) == 6 and {len(p["x"]) for p in paths} == {11}
    assert len(_paths(figs[1])) == len(_paths(figs[2])) == 6           # the same BSS over both students
    assert any(t["type"] == "contour" for t in figs[1]["data"])         # the teacher's boundary, dashed

    at.slider(key="bd_step").set_value(2).run()
    short = _paths(_figures(at)[0])
    assert {len(p["x"]) for p in short} == {3}
    assert short[0]["x"] == paths[0]["x"][:3]

    at.button(key="bd_shuffle").click().run()
    moved = _paths(_figures(at)[0])
    assert [p["x"][0] for p in moved] != [p["x"][0] for p in short]

    at.radio(key="bd_mode").set_value("by index").run()
    at.slider(key="bd_index").set_value(7).run()
    [one] = _paths(_figures(at)[0])
    x, _ = load_dataset("moons", "test")[0].tensors
    assert (one["x"][0], one["y"][0]) == pytest.approx(tuple(x[7].tolist()))

    mag = [float(m.value) for m in at.metric if m.label == "MagSim"]
    ang = [float(m.value) for m in at.metric if m.label == "AngSim"]
    assert len(mag) == len(ang) == 2 and all(0 < v <= 1 for v in mag) and all(-1 <= v <= 1 for v in ang)
    assert not at.exception, at.exception


def test_image_slider_changes_the_image_and_its_nine_bss():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    before = _figures(at)[3]
    heatmaps = [t for t in before["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 1 + 2 * 9
    at.slider(key="bd_img").set_value(5).run()
    assert not at.exception, at.exception
    after = _figures(at)[3]
    assert after["data"][0]["z"] != before["data"][0]["z"]
    titles = [a["text"] for a in after["layout"]["annotations"]]
    assert titles[0].startswith("original: ") and sum(t.startswith("→ ") for t in titles) == 9


def test_missing_zoo_is_a_message_not_an_exception(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("No moons model" in w.value for w in at.warning)
