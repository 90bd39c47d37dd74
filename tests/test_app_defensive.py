"""The defensive-distillation page: renders from the zoo, T drives the spec and the sweep, Break it breaks it."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import zoo
from distill_core.papers import defensive
from distill_core.papers.defensive import BREAK_ATTACKS
from distill_core.zoo import list_zoo
from ui.jobs import JOBS, ReproductionRun

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "defensive_page.py")
SHIPPED = ROOT / "assets" / "reproductions" / "papernot" / "results.json"
NEEDED = {"mnist-5k/defensive-T100", "mnist-5k/standard"}
pytestmark = pytest.mark.skipif(not NEEDED <= {m["name"] for m in list_zoo()},
                                reason="the zoo is not built (python -m distill_core zoo build)")


@pytest.fixture(autouse=True)
def _runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path / "runs"))


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _frame(at: AppTest, column: str):
    """The first table on the page with this column (AppTest does not expose a dataframe's key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _spec_T(at: AppTest) -> list[float]:
    return list(_frame(at, "role")["T"])


def _fake_sweep() -> ReproductionRun:
    """A finished quick rerun, as the page keeps it in session state."""
    def point(T, jsma):
        return {"T": T, "test_accuracy": 0.9, "jsma_softmax_success": jsma, "rho_adv": 0.02, "confidence": 0.99,
                "zero_grad_fraction": jsma / 2, "grad_hist": {"edges": [-20.0, -10.0, 0.0], "counts": [1, 3]}}

    job = ReproductionRun("papernot", out=None, status="done")
    job.results = {"quick": True, "command": "python -m distill_core reproduce papernot --quick", "seconds": 60,
                   "undistilled": point(1.0, 0.9), "sweep": [point(1.0, 0.8), point(20.0, 0.1), point(100.0, 0.0)],
                   "expectations": [{"claim": "c", "shown": True, "detail": "d"}]}
    return job


def test_renders_and_T_changes_the_training_spec_and_the_sweep_highlight():
    at = _page()
    assert _spec_T(at) == [20.0, 20.0]
    assert list(_frame(at, "role")["teacher"]) == ["-", "@0"]
    at.session_state["dd_quick"] = _fake_sweep()
    at.run()
    assert not at.exception
    sweep = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [s["x0"] for s in sweep["layout"]["shapes"]] == pytest.approx([1.30103])    # log10(20)
    at.select_slider(key="dd_T").set_value(100).run()
    assert _spec_T(at) == [100.0, 100.0]
    sweep = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [s["x0"] for s in sweep["layout"]["shapes"]] == pytest.approx([2.0])
    jsma = next(t for t in sweep["data"] if t["name"] == "JSMA success on the softmax")
    assert jsma["y"] == pytest.approx([80.0, 10.0, 0.0])


def test_rerun_the_sweep_runs_the_reproduction_in_the_background(monkeypatch):
    import distill_core.reproduce as reproduce

    calls = []

    def quick(experiment, *, quick, out, seed, log):
        calls.append((experiment, quick))
        log("training the undistilled model")
        return _fake_sweep().results

    monkeypatch.setattr(reproduce, "run_reproduction", quick)
    at = _page()
    at.button(key="dd_sweep_run").click().run()
    job = at.session_state["dd_quick"]
    deadline = time.time() + 30
    while job.status == "running" and time.time() < deadline:
        time.sleep(0.1)
    at.run()
    assert not at.exception, at.exception
    assert calls == [("papernot", True)] and job.status == "done"
    assert "training the undistilled model" in at.code[0].value
    sweep = json.loads(at.get("plotly_chart")[0].proto.spec)      # the quick rerun is shown first
    assert next(t for t in sweep["data"] if t["name"] == "clean test accuracy")["x"] == [1.0, 20.0, 100.0]


def _frames(at: AppTest, column: str) -> list:
    return [d.value for d in at.dataframe if column in d.value.columns]


def test_break_it_shows_jsma_on_the_softmax_fails_where_jsma_on_the_logits_succeeds(monkeypatch):
    calls, real = [], defensive.break_defensive

    def spy(*args, **kwargs):                   # the page's live panel runs the one Break-it protocol
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(defensive, "break_defensive", spy)
    at = _page()
    assert at.selectbox(key="dd_break_model").value == "zoo: defensive-T100"
    shipped_tables = _frames(at, "detail")     # before Break it: the reproduction's result only
    at.slider(key="dd_break_n").set_value(5).run()
    at.button(key="dd_break").click().run()
    assert not at.exception, at.exception
    assert len(calls) == 1 and calls[0]["n"] == 5 and calls[0]["source"] is not None and not calls[0]["cw_l2"]
    table = _frame(at, "detail")
    # One label map, in the protocol's order (no CW-L2 unless ticked).
    assert list(table["attack"]) == [v for k, v in BREAK_ATTACKS.items() if k != "cw_l2"]
    rate = {a: float(s.rstrip(" %")) for a, s in zip(table["attack"], table["success"])}
    assert rate[BREAK_ATTACKS["jsma_softmax"]] < rate[BREAK_ATTACKS["jsma_logits"]]
    assert rate[BREAK_ATTACKS["pgd_z_over_t"]] > rate[BREAK_ATTACKS["pgd_softmax"]]
    zero_soft, zero_logit = (m.value for m in at.metric[:2])
    assert int(zero_soft.split(" / ")[0]) > 0 and int(zero_logit.split(" / ")[0]) == 0
    # The reproduction's result, below, is shown by the same table: same columns, same labels.
    assert len(_frames(at, "detail")) == len(shipped_tables) + 1
    for frame in shipped_tables:
        assert list(frame.columns) == list(table.columns) and set(frame["attack"]) <= set(BREAK_ATTACKS.values())


def test_the_reproductions_break_it_is_one_table_with_the_label_map():
    at = _page()
    shipped = json.loads(SHIPPED.read_text())["break_it"]
    [frame] = _frames(at, "detail")
    assert list(frame["attack"]) == [BREAK_ATTACKS[r["key"]] for r in shipped["rows"]] == list(BREAK_ATTACKS.values())
    assert list(frame["success"]) == [f"{100 * r['success']:.0f} %" for r in shipped["rows"]]


def test_training_teacher_and_student_on_moons_saves_two_runs(tmp_path):
    at = _page()
    at.radio(key="dd_dataset").set_value("moons").run()
    at.number_input(key="dd_epochs_moons").set_value(1).run()
    assert list(_frame(at, "role")["model"]) == ["mlp", "mlp"]
    at.button(key="dd_start").click().run()
    assert not at.exception, at.exception
    job = JOBS.get(at.session_state["dd_job"])
    job.join(90)
    at.run()
    assert job.snapshot().status == "done", job.snapshot().message
    assert any(s.value.startswith("Done in") and "student:" in s.value for s in at.success)
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_missing_zoo_is_a_message_not_an_exception(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    monkeypatch.setenv("DISTILL_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("No mnist-5k model" in w.value for w in at.warning)


def test_shipped_sweep_draws_the_truth_beside_the_papers_curve():
    """METHODS.md section 1a on the page: JSMA success falls with T, AutoAttack's robust accuracy does not rise."""
    at = _page()
    assert not at.exception
    sweep = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t["name"] for t in sweep["data"]]
    assert "true robust accuracy (AutoAttack)" in names and "apparent robust accuracy (PGD-CE)" in names
    truth = next(t for t in sweep["data"] if t["name"] == "true robust accuracy (AutoAttack)")
    apparent = next(t for t in sweep["data"] if t["name"] == "apparent robust accuracy (PGD-CE)")
    assert max(truth["y"]) <= 5.0                      # the floor at every T
    assert apparent["y"][-1] >= 50.0 > apparent["y"][0]  # the naive attack's number climbs with T
    assert any("AutoAttack's robust accuracy stays at the floor" in c.value for c in at.caption)
