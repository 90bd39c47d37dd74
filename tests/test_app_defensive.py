"""The defensive-distillation page: renders from the zoo, T drives the spec and the sweep, Break it breaks it."""

import json
import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core import zoo
from distill_core.papers import defensive
from distill_core.papers.defensive import BREAK_ATTACKS, DEFAULT_BREAK_N, DEFAULT_T, MEASURED_DEFAULTS, break_verdict
from distill_core.zoo import list_zoo
from ui.common import available_models, run_label
from ui.jobs import JOBS, ReproductionRun
from ui.navigation import page

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
    # The defaults are papers.defensive's: T = 100, 4 epochs of Adam at lr 2e-3 per stage.
    assert _spec_T(at) == [DEFAULT_T, DEFAULT_T] == [100.0, 100.0]
    specs = _frame(at, "role")
    assert list(specs["teacher"]) == ["-", "stage 0"] and list(specs["epochs"]) == [4, 4]
    assert list(specs["optimiser"]) == ["adam lr 0.002, batch 64"] * 2
    assert any("measured headless" in c.value and MEASURED_DEFAULTS["command"] in c.value for c in at.caption)
    assert not any("Your settings differ" in c.value for c in at.caption)
    at.session_state["dd_quick"] = _fake_sweep()
    at.run()
    assert not at.exception
    sweep = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [s["x0"] for s in sweep["layout"]["shapes"]] == [100.0]          # T itself: plotly places it on the log axis
    at.select_slider(key="dd_T").set_value(20).run()
    assert _spec_T(at) == [20.0, 20.0]
    assert any("Your settings differ" in c.value and "partly masked" in c.value for c in at.caption)
    sweep = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [s["x0"] for s in sweep["layout"]["shapes"]] == [20.0]
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
    assert any("training the undistilled model" in c.value for c in at.code)
    sweep = json.loads(at.get("plotly_chart")[0].proto.spec)      # the quick rerun is shown first
    assert next(t for t in sweep["data"] if t["name"] == "clean test accuracy")["x"] == [1.0, 20.0, 100.0]


def _frames(at: AppTest, column: str) -> list:
    return [d.value for d in at.dataframe if column in d.value.columns]


def _finish_break(at: AppTest) -> None:
    """Wait for the Break-it task the page started (it runs in the background), then redraw."""
    task = at.session_state["dd_break_task"]
    assert task.join(120), "Break it did not finish"
    assert task.status == "done", task.error
    at.run()
    assert not at.exception, at.exception


def test_break_it_shows_jsma_on_the_softmax_fails_where_jsma_on_the_logits_succeeds(monkeypatch):
    calls, real = [], defensive.break_defensive

    def spy(*args, **kwargs):                   # the page's live panel runs the one Break-it protocol
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(defensive, "break_defensive", spy)
    at = _page()
    assert at.selectbox(key="dd_break_model").value == "zoo: defensive-T100"
    assert at.slider(key="dd_break_n").value == DEFAULT_BREAK_N
    shipped_tables = _frames(at, "detail")     # before Break it: the reproduction's result only
    at.slider(key="dd_break_n").set_value(5).run()
    at.button(key="dd_break").click().run()
    assert not at.exception, at.exception
    _finish_break(at)
    assert len(calls) == 1 and calls[0]["n"] == 5 and calls[0]["source"] is not None and not calls[0]["cw_l2"]
    table = _frame(at, "detail")
    # One label map, in the protocol's order (no CW-L2 unless ticked).
    assert list(table["attack"]) == [v for k, v in BREAK_ATTACKS.items() if k != "cw_l2"]
    rate = {a: float(s.rstrip(" %")) for a, s in zip(table["attack"], table["success"])}
    assert rate[BREAK_ATTACKS["jsma_softmax"]] < rate[BREAK_ATTACKS["jsma_logits"]]
    assert rate[BREAK_ATTACKS["pgd_z_over_t"]] > rate[BREAK_ATTACKS["pgd_softmax"]]
    zero_soft, zero_logit = (m.value for m in at.metric[:2])
    assert int(zero_soft.split(" / ")[0]) > 0 and int(zero_logit.split(" / ")[0]) == 0
    # The sentence beside the chart is the verdict read from this result, not a fixed text.
    res = at.session_state["dd_break_task"].result["result"]
    verdict = break_verdict(res)
    assert verdict.kind == "masked"
    assert any(md.value == verdict.text for md in at.markdown)
    assert not any("which the defence blinds" in md.value for md in at.markdown)
    # The reproduction's result, below, is shown by the same table: same columns, same labels.
    assert len(_frames(at, "detail")) == len(shipped_tables) + 1
    for frame in shipped_tables:
        assert list(frame.columns) == list(table.columns) and set(frame["attack"]) <= set(BREAK_ATTACKS.values())


def test_break_it_on_an_undistilled_model_says_not_masked():
    at = _page()
    at.selectbox(key="dd_break_model").set_value("zoo: standard").run()
    at.slider(key="dd_break_n").set_value(5).run()
    at.button(key="dd_break").click().run()
    _finish_break(at)
    verdict = break_verdict(at.session_state["dd_break_task"].result["result"])
    assert verdict.kind == "not masked"
    verdicts = [md.value for md in at.markdown if md.value.startswith(("**Masked", "**Partly", "**Not masked"))]
    assert verdicts[0] == verdict.text and verdicts[0].startswith("**Not masked.**")   # the live result, on top
    assert all(v.startswith("**Masked.**") for v in verdicts[1:])          # the reproduction's T = 100 student


def test_break_it_runs_in_the_background_and_survives_leaving_the_page(monkeypatch):
    """Issue 16, item 6: leaving the page mid-Break-it loses nothing; coming back shows the result."""
    release, real = threading.Event(), defensive.break_defensive

    def held(*args, **kwargs):                  # the attacks wait until the user has left the page
        assert release.wait(90)
        return real(*args, **kwargs)

    monkeypatch.setattr(defensive, "break_defensive", held)
    try:
        _leave_and_come_back(release)
    finally:
        release.set()


def _leave_and_come_back(release: threading.Event) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(page("defensive").file).run()
    at.slider(key="dd_break_n").set_value(5).run()
    at.button(key="dd_break").click().run()           # returns at once: an inline Break it would block here
    assert not at.exception, at.exception
    task = at.session_state["dd_break_task"]
    assert task.status == "running" and at.button(key="dd_break").disabled
    at.switch_page(page("train").file).run()           # leave mid-run
    assert not at.exception, at.exception
    release.set()
    assert task.join(120) and task.status == "done", task.error
    at.switch_page(page("defensive").file).run()       # come back: the finished result is there
    assert not at.exception, at.exception
    assert at.slider(key="dd_break_n").value == 5
    table = _frame(at, "detail")
    assert list(table["attack"])[0] == BREAK_ATTACKS["jsma_softmax"]
    assert any(md.value == break_verdict(task.result["result"]).text for md in at.markdown)
    # A reload (a new session) finds the last Break it too.
    fresh = _page()
    assert any(md.value == break_verdict(task.result["result"]).text for md in fresh.markdown)


def test_after_training_step_3_selects_the_new_student_and_names_the_teacher():
    at = _page()
    at.number_input(key="dd_epochs_mnist-5k").set_value(1).run()
    at.button(key="dd_start").click().run()
    assert not at.exception, at.exception
    job = JOBS.get(at.session_state["dd_job"])
    assert job.join(180)
    at.run()
    assert not at.exception, at.exception
    snap = job.snapshot()
    assert snap.status == "done", snap.message
    teacher_run, student_run = (p.name for p in snap.run_paths)
    box = at.selectbox(key="dd_break_model")
    assert box.value.startswith("run: ") and student_run in box.value            # the new student is selected
    assert f"run: defensive student, T = 100 · {student_run}" in box.options
    assert f"run: defensive teacher, T = 100 · {teacher_run}" in box.options       # not "standard"
    assert not any("standard" in o.split(" · ")[0] for o in box.options if o.startswith("run: "))
    # Other pages' lists (ui.common.available_models) say it too: a standard run trained at T != 1 is a T-teacher.
    labels = {Path(r.key).name: r.label for r in available_models("mnist-5k") if r.source == "run"}
    assert labels == {teacher_run: f"run: {teacher_run} (defensive teacher, T = 100)",
                      student_run: f"run: {student_run}"}
    assert run_label("x", {"method": "standard", "method_config": {"T": 1.0}}) == "run: x"
    done = next(s.value for s in at.success if s.value.startswith("Done in"))
    assert "defensive teacher, T = 100:" in done and "defensive student, T = 100:" in done
    assert "points below its teacher" in done or "as accurate as its teacher" in done
    assert any(c.value.startswith(f"run: defensive student, T = 100 · {student_run}") for c in at.caption)
    # The handoff happens once: choosing another model afterwards sticks.
    at.selectbox(key="dd_break_model").set_value("zoo: defensive-T100").run()
    at.run()
    assert at.selectbox(key="dd_break_model").value == "zoo: defensive-T100"


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
    assert any(s.value.startswith("Done in") and "defensive student, T = 100:" in s.value for s in at.success)
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
