"""The boundary-samples page: renders from the zoo; the step slider, the points and the image drive what it draws;
the KD vs BSS comparison shows the shipped study over seeds with a caption written from its numbers."""

import base64
import copy
import json
import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from distill_core import zoo
from distill_core.data import load_dataset
from distill_core.papers import bss as papers_bss
from tests._apptest import ROOT, chart, require_zoo

PAGE = str(ROOT / "pages" / "boundary_page.py")
NEEDED = {"moons/teacher", "moons/kd", "moons/bss", "mnist-5k/standard"}
require_zoo(*NEEDED)


FIGURES = ("bd_teacher_fig", "bd_kd_fig", "bd_bss_fig", "bd_image_fig")


def _figures(at: AppTest) -> list[dict]:
    """The page's plotly figures: teacher, KD student, BSS student, the image's BSS."""
    return [chart(at, key) for key in FIGURES]


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
    assert len(at.get("plotly_chart")) == 5                           # + the study over seeds
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


# ---------------------------------------------------------------------- the study over seeds

def _shipped() -> dict:
    return json.loads(papers_bss.BSS_MOONS_RESULTS.read_text())


def _pm(cell: dict) -> str:
    return f"{cell['mean']:.3f} ± {cell['std']:.3f}"


def test_the_shipped_study_covers_seeds_and_scarce_data():
    study = _shipped()
    assert len(study["seeds"]) >= 5 and 1.0 in study["fractions"] and min(study["fractions"]) <= 0.1
    assert {(r["fraction"], r["method"]) for r in study["rows"]} == {(f, m) for f in study["fractions"]
                                                                     for m in ("kd", "bss")}
    for r in study["rows"]:
        for metric in ("accuracy", "mag_sim", "ang_sim"):
            values = r[metric]["values"]
            assert len(values) == len(study["seeds"])
            assert r[metric]["mean"] == pytest.approx(np.mean(values))
            assert r[metric]["std"] == pytest.approx(np.std(values, ddof=1))
    assert study["command"].startswith("python scripts/bss_moons.py") and study["seconds"] > 0
    assert "/work/" not in json.dumps(study) and "/home/" not in json.dumps(study)    # no machine's paths
    assert study["caption"] == papers_bss.bss_vs_kd_caption(study)                    # the file is in step


def test_the_page_shows_the_shipped_study_and_a_caption_from_its_numbers():
    study = _shipped()
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.caption]
    assert papers_bss.bss_vs_kd_caption(study) in captions
    assert not any("The paper reports BSS raising both" in c for c in captions)      # the old fixed sentence
    [shown] = [d.value for d in at.dataframe if "MagSim" in d.value.columns]     # the study's table
    assert len(shown) == len(study["rows"])
    for (_, line), r in zip(shown.iterrows(), study["rows"]):
        assert (line["MagSim"], line["AngSim"]) == (_pm(r["mag_sim"]), _pm(r["ang_sim"]))
    fig = chart(at, "bd_study_fig")
    assert [t["name"] for t in fig["data"]] == ["KD", "BSS"]
    for trace, method in zip(fig["data"], ("kd", "bss")):
        rows = [r for r in study["rows"] if r["method"] == method]
        means = [r[m]["mean"] for m in ("mag_sim", "ang_sim") for r in rows]
        assert _arr(trace["y"]) == pytest.approx(means)
        assert _arr(trace["error_y"]["array"]) == pytest.approx([r[m]["std"] for m in ("mag_sim", "ang_sim")
                                                                   for r in rows])


def test_the_caption_follows_the_file_not_a_fixed_sentence(tmp_path, monkeypatch):
    """A study where BSS is far above KD with scarce data: the page must say so."""
    study = copy.deepcopy(_shipped())
    scarce = min(study["fractions"])
    for r in study["rows"]:
        if math.isclose(r["fraction"], scarce):
            level = 0.99 if r["method"] == "bss" else 0.90
            for metric in ("mag_sim", "ang_sim"):
                values = [level + 0.001 * (i % 2) for i in range(len(study["seeds"]))]
                r[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)), "values": values}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(study))
    monkeypatch.setattr(papers_bss, "BSS_MOONS_RESULTS", path)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    expected = papers_bss.bss_vs_kd_caption(study)
    assert "BSS raises MagSim" in expected and "this run shows it with scarce data" in expected
    assert expected in [c.value for c in at.caption]


def test_a_missing_study_is_a_notice_with_its_command(tmp_path, monkeypatch):
    monkeypatch.setattr(papers_bss, "BSS_MOONS_RESULTS", tmp_path / "absent" / "results.json")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any(papers_bss.BSS_MOONS_COMMAND in i.value for i in at.info)
    assert len(_figures(at)) == 4                                   # the rest of the page still draws
