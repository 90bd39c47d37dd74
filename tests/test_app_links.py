"""Links that reopen a setup (``ui.url_state``): per page, settings given as query parameters appear in the widgets
(and the figure where it names them), a bad one shows the notice and keeps the default, the address bar follows a
widget change; the parsers refuse what the issue lists (stale model, out of range, text for a number)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from distill_core.methods import get_method
from tests._apptest import chart, open_page, require_zoo
from ui.url_state import BadValue, Choice, Choices, Flag, Number, query_string

require_zoo("mnist-5k/standard", "mnist-5k/trades", "mnist-5k/defensive-T20", "moons/teacher")

MTARD = get_method("mtard").Config()
# page -> (query parameters, the last of them bad; the widgets the good ones set; the bad one's widget and default)
CASES = {
    "temperature": ({"model": "zoo: trades", "index": "12", "clean": "zoo: standard", "robust": "zoo: trades"},
                    {"temp_model": "zoo: trades", "temp_index": 12}, ("T", "temp_T", 10.0), {"T": "0.123"}),
    "attack-lab": ({"index": "3", "models": ["zoo: standard", "zoo: trades"], "attacked": "zoo: trades",
                    "attack": "pgd", "steps": "5"},
                   {"atk_index": 3, "atk_models": ["zoo: standard", "zoo: trades"], "atk_target_model": "zoo: trades",
                    "atk_name": "pgd", "atk_p_pgd_steps": 5}, ("eps", "atk_p_pgd_eps", 0.3), {"eps": "lots"}),
    "sensitivity": ({"models": ["zoo: standard", "zoo: defensive-T20"], "wrt": "logits", "images": "8"},
                    {"sens_models": ["zoo: standard", "zoo: defensive-T20"], "sens_wrt": "logits", "sens_index": 8},
                    ("radius", "sens_radius", 0.5), {"radius": "7"}),
    "defensive": ({"T": "20", "n": "10"}, {"dd_T": 20, "dd_break_n": 10},
                  ("model", "dd_break_model", "zoo: defensive-T100"), {"model": "zoo: deleted-long-ago"}),
    "boundary": ({"points": "by index", "index": "17", "eta": "0.05"},
                 {"bd_mode": "by index", "bd_index": 17, "bd_eta": 0.05}, ("step", "bd_step", 10), {"step": "-3"}),
    "multi-teacher": ({"tau_nat": "3", "w_adv": "0.7", "ebb": "0"},
                      {"mt_tau_nat": 3.0, "mt_w_adv": 0.7, "mt_ebb": False}, ("r_w", "mt_r_w", MTARD.r_w),
                      {"r_w": "abc"}),
    "trade-off": ({"sources": "zoo", "apparent": "1"}, {"to_sources": ["zoo"], "to_apparent": True},
                  ("methods", "to_methods", None), {"methods": "no-such-method"}),
}


@pytest.mark.parametrize("url_path", CASES)
def test_a_link_sets_the_widgets_and_a_bad_value_keeps_the_default_with_a_notice(url_path):
    good, expected, (bad_name, bad_key, default), bad = CASES[url_path]
    at = open_page(url_path, {**good, **bad})
    for key, value in expected.items():
        got = at.session_state[key]
        assert (got == pytest.approx(value) if isinstance(value, float) else got == value), (key, got)
    notices = [w.value for w in at.warning if "This link has settings" in w.value]
    assert len(notices) == 1 and f"**{bad_name}**" in notices[0], [w.value for w in at.warning]
    if default is not None:
        assert at.session_state[bad_key] == pytest.approx(default) if isinstance(default, float) else \
            at.session_state[bad_key] == default
    # the address bar now holds the page's settings, the bad one replaced by what the page shows
    published = {k: v if isinstance(v, list) else [v] for k, v in at.query_params.items()}
    for name, value in good.items():
        assert published[name] == (value if isinstance(value, list) else [value]), (name, published[name])
    assert bad[bad_name] not in published.get(bad_name, [])


def test_the_temperature_figure_shows_the_linked_T_and_a_widget_change_updates_the_link():
    at = open_page("temperature", {"T": "5"})
    names = [t.get("name") for t in chart(at, "temp_bars")["data"]]
    assert "T = 5.01" in names, names              # 5 in a link: the nearest T on the page's grid
    at.select_slider(key="temp_T").set_value(20.0).run()
    assert at.query_params["T"] in ("20", ["20"])
    again = open_page("temperature", {"T": "5"})        # a new session on the same link: the link wins
    assert again.session_state["temp_T"] == 5.01


def test_an_attack_lab_link_with_run_shows_the_same_result():
    params = {"index": "0", "models": ["zoo: standard"], "attacked": "zoo: standard", "attack": "pgd",
              "eps": "0.3", "steps": "10", "run": "1"}
    first = open_page("attack-lab", params)
    second = open_page("attack-lab", dict(first.query_params))      # the link the first one published
    for at in (first, second):
        assert [m.value for m in at.metric][:2] == [m.value for m in first.metric][:2]
    assert second.query_params["run"] in ("1", ["1"])
    assert any("uploaded or drawn image is not put in a link" in c.value for c in second.caption)


def test_parsers_refuse_what_a_page_cannot_use():
    with pytest.raises(BadValue, match="not a number"):
        Number("eps", "k", 0, 1).parse(["abc"])
    with pytest.raises(BadValue, match="outside"):
        Number("eps", "k", 0, 1).parse(["1.5"])
    with pytest.raises(BadValue, match="whole number"):
        Number("i", "k", 0, 9, integer=True).parse(["2.5"])
    with pytest.raises(BadValue, match="finite"):
        Number("x", "k").parse(["nan"])
    with pytest.raises(BadValue, match="not one of the choices"):
        Choice("model", "k", lambda: ["zoo: standard"]).parse(["run: deleted"])
    with pytest.raises(BadValue, match="not available"):
        Choices("models", "k", ["a", "b"]).parse(["a", "c"])
    with pytest.raises(BadValue):
        Flag("f", "k").parse(["maybe"])
    assert Choice("T", "k", [1.0, 5.0, 10.0]).parse(["5"]) == 5.0           # a number written another way
    assert Choice("T", "k", [4.47, 5.01]).parse(["5"]) == 5.01               # the nearest on a grid, within 2 %
    with pytest.raises(BadValue):
        Choice("T", "k", [4.47, 5.01]).parse(["4.7"])
    assert Choices("m", "k", ["a", "b"]).parse(["b", "a", "b"]) == ["b", "a"]
    assert query_string({"b": ["2"], "a": ["x y", "z"]}) == "a=x+y&a=z&b=2"


def test_through_the_router_a_link_sets_the_sidebar_dataset_again_after_the_user_changed_it():
    """The sidebar's dataset box is drawn by app.py before the page: a link's dataset goes in through app.py (one
    rerun), also when the same link is opened a second time after the user picked another dataset."""
    from tests._apptest import ROOT

    link = {"dataset": "digits", "model": "zoo: standard", "T": "5"}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/temperature_page.py")
    for k, v in link.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["dataset"] == "digits" and at.session_state["temp_T"] == 5.01
    at.sidebar.selectbox(key="dataset").set_value("mnist-5k").run()
    assert not at.exception and at.session_state["dataset"] == "mnist-5k"
    at.query_params.clear()
    for k, v in link.items():                              # the same link, opened again
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["dataset"] == "digits"
