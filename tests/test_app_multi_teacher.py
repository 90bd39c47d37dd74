"""The Multi-teacher page (AppTest): MTARD live, live tuning through the job's controls, the comparison."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core.runs import read_run
from distill_core.zoo import list_zoo
from ui.jobs import JOBS

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "multi_teacher_page.py")
TIMEOUT = 120
ZOO = {m["name"] for m in list_zoo()}
needs_zoo = pytest.mark.skipif(not {"moons/teacher", "mnist-5k/standard", "mnist-5k/trades"} <= ZOO,
                               reason="the model zoo is not built (python -m distill_core zoo build)")


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The page with an empty runs folder; every job it starts is stopped and joined at the end."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("DISTILL_RUNS", str(runs))
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.runs = runs
    yield at          # conftest stops and forgets the jobs it started (they live on the server's board)


def _wait(cond, what: str) -> None:
    end = time.time() + TIMEOUT
    while not cond():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def _start_on_moons(at: AppTest, epochs: int = 200):
    """Start a long MTARD run on moons (zoo moons teachers, an MLP student) and wait for its first step."""
    at.run()
    at.session_state["dataset"] = "moons"
    at.run()
    assert not at.exception
    at.number_input(key="mt_epochs").set_value(epochs).run()
    assert at.number_input(key="mt_epochs").value == epochs
    at.number_input(key="mt_pgd_steps").set_value(2).run()
    at.button(key="mt_start").click().run()
    assert not at.exception
    job = JOBS.get(at.session_state["mt_job"])
    _wait(lambda: job.snapshot().last("step") is not None or job.snapshot().finished, "a first MTARD step")
    assert job.snapshot().status == "running", job.snapshot().message
    at.run()
    assert not at.exception
    return job


@needs_zoo
def test_renders_with_the_zoo_defaults_and_the_comparison(app):
    app.run()
    assert not app.exception
    assert app.selectbox(key="mt_clean_mnist-5k").value == "zoo: standard"
    assert app.selectbox(key="mt_robust_mnist-5k").value == "zoo: trades"
    assert app.selectbox(key="mt_student_image").value == "small-cnn"
    assert app.number_input(key="mt_lr_tau").value == 0.001 and app.number_input(key="mt_r_w").value == 0.025
    assert app.toggle(key="mt_ebb").value and app.toggle(key="mt_nlb").value
    assert len(app.latex) >= 8          # the loss, EBB (4) and NLB (3, one rule per line so none is cut off)
    assert any("beta (= 1, the paper's)" in c.value for c in app.caption)
    methods = set(app.dataframe[0].value["method"])
    assert {"kd", "ard", "rslad"} & methods
    chart = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in chart["data"]] == ["clean", "robust (AutoAttack)", "W-Robust"]
    zoo_ard = next(m for m in list_zoo(dataset="mnist-5k") if m["method"] == "ard")
    i = chart["data"][0]["x"].index("ard")
    assert chart["data"][0]["y"][i] == pytest.approx(100 * zoo_ard["metrics"]["test_accuracy"])
    w = (zoo_ard["metrics"]["test_accuracy"] + zoo_ard["metrics"]["robust_accuracy"]) / 2
    assert chart["data"][2]["y"][i] == pytest.approx(100 * w)


@needs_zoo
def test_changing_the_dataset_changes_the_teachers_offered(app):
    app.run()
    app.session_state["dataset"] = "moons"
    app.run()
    assert not app.exception
    assert app.selectbox(key="mt_clean_moons").value == "zoo: teacher"
    assert app.selectbox(key="mt_student_points").value == "mlp"
    assert all(o.startswith(("zoo: ", "run: ")) for o in app.selectbox(key="mt_robust_moons").options)


@needs_zoo
def test_taking_over_writes_the_jobs_controls_and_handing_back_clears_them(app):
    job = _start_on_moons(app)
    assert job.label.startswith("mtard") and job.origin == "multi-teacher"
    assert app.get("progress")
    assert job.snapshot().status == "running", job.snapshot().message
    assert app.slider(key="mt_val_tau_adv").disabled            # EBB is in charge
    assert job.controls.snapshot() == {}

    app.toggle(key="mt_take_tau_adv").set_value(True).run()
    assert not app.exception
    assert job.snapshot().status == "running", job.snapshot().message
    assert not app.slider(key="mt_val_tau_adv").disabled
    app.slider(key="mt_val_tau_adv").set_value(3.0).run()
    assert job.controls.get("tau_adv") == 3.0
    app.toggle(key="mt_take_w_adv").set_value(True).run()
    app.slider(key="mt_val_w_adv").set_value(0.8).run()
    assert job.controls.snapshot() == {"tau_adv": 3.0, "w_adv": 0.8}

    # the worker applies it from its next step: the logged series show the user's values
    def applied():
        last = job.snapshot().last("step")
        return last is not None and last.data["tau_adv"] == 3.0 and last.data["w_adv"] == pytest.approx(0.8)
    _wait(applied, "the worker to apply the user's values")
    app.run()
    tau_chart = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert tau_chart["data"][1]["name"] == "tau_adv" and tau_chart["data"][1]["y"][-1] == 3.0
    assert any(a["text"] == "you: tau_adv" for a in tau_chart["layout"].get("annotations", []))

    # a reloaded tab (a new session, no state): it finds the running job, and its widgets show what the worker uses
    again = AppTest.from_file(PAGE, default_timeout=90)
    again.run()
    assert not again.exception
    assert again.toggle(key="mt_take_tau_adv").value and again.slider(key="mt_val_tau_adv").value == 3.0
    assert not again.toggle(key="mt_take_tau_nat").value
    assert job.controls.get("tau_adv") == 3.0
    # Two tabs on one run: redraws only read the controls, so the other tab does not undo this one's takeover ...
    again.run()
    app.run()
    again.run()
    assert job.controls.get("tau_adv") == 3.0 and app.toggle(key="mt_take_tau_adv").value
    # ... and a hand-back in one tab shows in the other at its next redraw.
    again.toggle(key="mt_take_w_adv").set_value(False).run()
    assert job.controls.get("w_adv") is None
    app.run()
    assert not app.toggle(key="mt_take_w_adv").value
    app.toggle(key="mt_take_w_adv").set_value(True).run()
    app.slider(key="mt_val_w_adv").set_value(0.8).run()

    app.toggle(key="mt_take_tau_adv").set_value(False).run()
    assert job.controls.get("tau_adv") is None and job.controls.get("w_adv") == 0.8

    app.button(key="mt_stop").click().run()
    assert job.join(TIMEOUT)
    app.run()
    assert not app.exception
    assert job.snapshot().status == "stopped"
    assert any("Stopped by you" in w.value for w in app.warning)


@needs_zoo
def test_finished_run_is_measured_and_joins_the_comparison(app):
    job = _start_on_moons(app)
    app.button(key="mt_stop").click().run()
    assert job.join(TIMEOUT)
    app.run()
    assert not app.exception
    [path] = job.snapshot().run_paths
    robustness = read_run(path).summary["robustness"]
    assert 0 <= robustness["robust_accuracy"] <= 1 and 0 < robustness["clean_accuracy"] <= 1
    assert robustness["protocol"] == "autoattack-fast" and robustness["n"] == 200   # all of moons' test split
    table = app.dataframe[0].value
    mine = table[table["model"] == f"your run {path.name[-6:]} (stopped)"]
    assert len(mine) == 1 and mine["method"].iloc[0] == "mtard"
    assert mine["robust, AutoAttack (%)"].iloc[0] == pytest.approx(100 * robustness["robust_accuracy"], abs=0.05)
    assert "AutoAttack fast" in mine["measured with"].iloc[0]


@needs_zoo
def test_a_finished_run_lands_on_the_shipped_trades_and_mtard_curves(app, tmp_path, monkeypatch):
    import distill_core.lab.sweeps as sweeps
    from distill_core.lab.sweeps import run_sweep, sweep_specs
    from distill_core.spec import TrainSpec
    from distill_core.train import TrainConfig

    shipped = tmp_path / "shipped"
    base = TrainSpec(dataset="moons", model="mlp", method="trades", train=TrainConfig(epochs=1, max_steps=5),
                     method_config={"steps": 2})
    run_sweep(sweep_specs(base, "beta", "1,6"), shipped, protocol="autoattack-fast", n=50)
    monkeypatch.setattr(sweeps, "SHIPPED_SWEEPS", shipped)
    job = _start_on_moons(app)
    app.button(key="mt_stop").click().run()
    assert job.join(TIMEOUT)
    app.run()
    assert not app.exception
    spec = json.loads(next(c for c in app.get("plotly_chart") if c.proto.id.endswith("-mt_landed_chart")).proto.spec)
    [curve] = [t for t in spec["data"] if t.get("name") == "trades: beta sweep"]
    assert curve["text"] == ["beta=1", "beta=6"]
    mine = [t for t in spec["data"] if t.get("name") == "mtard"]
    assert mine and mine[0]["text"][0].startswith("you: mtard")
