"""The Train page (AppTest) and its figures (distill_core/plots/training.py)."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from distill_core.plots.training import (
    accuracy_figure,
    comparison_figure,
    downsample,
    group_series,
    loss_figure,
    moving_average,
    run_curves_figure,
    series_figure,
    switch_points,
)
from distill_core.train import TrainConfig
from ui.jobs import JOBS

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "train_page.py")
TIMEOUT = 120


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The Train page with an empty runs folder (``$DISTILL_RUNS``); every job it starts is stopped at the end."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("DISTILL_RUNS", str(runs))
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.runs = runs
    yield at          # conftest stops and forgets the jobs it started (they live on the server's board)


def _on_moons(at: AppTest, epochs: int = 1) -> AppTest:
    at.session_state["dataset"] = "moons"
    at.run()
    assert not at.exception
    at.number_input(key="train_epochs").set_value(epochs).run()
    return at


def _only_job(at: AppTest):
    [job] = JOBS.all()
    return job


def _wait(cond, what: str) -> None:
    end = time.time() + TIMEOUT
    while not cond():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_renders_with_the_zoo_and_shows_no_job_yet(app):
    app.run()
    assert not app.exception
    assert app.selectbox(key="train_dataset").value == "mnist-5k"
    assert app.selectbox(key="train_method").value == "standard"
    assert app.button(key="train_start").label == "Start training"
    assert any("No training yet" in i.value for i in app.info)
    assert any("No saved runs" in i.value for i in app.info)


def test_changing_the_method_changes_the_settings_shown(app):
    _on_moons(app)
    keys = {w.key for w in app.number_input}
    assert "train_cfg_standard_T" in keys and "train_cfg_trades_beta" not in keys
    app.selectbox(key="train_method").set_value("trades").run()
    assert not app.exception
    keys = {w.key for w in app.number_input}
    assert "train_cfg_standard_T" not in keys
    assert app.number_input(key="train_cfg_trades_beta").value == 6.0        # TRADESConfig's default
    assert app.number_input(key="train_cfg_trades_steps").value == 10
    assert app.number_input(key="train_cfg_trades_eps").value is None         # None = the dataset's budget
    app.selectbox(key="train_method").set_value("mtard").run()
    assert not app.exception
    assert app.number_input(key="train_cfg_mtard_lr_tau").value == 0.001
    assert app.checkbox(key="train_cfg_mtard_ebb").value is True
    # The shipped zoo has moons teachers: both roles start on one of them (ROLE_DEFAULTS).
    assert app.selectbox(key="train_mtard_clean_teacher_moons").value.startswith("zoo: ")
    assert app.selectbox(key="train_mtard_robust_teacher_moons").value.startswith("zoo: ")


def test_start_shows_progress_then_done_and_saves_the_run(app):
    _on_moons(app, epochs=1)
    app.button(key="train_start").click().run()
    assert not app.exception
    job = _only_job(app)
    assert job.origin == "train"
    if app.dataframe:   # a folder half-written at that instant is this job's, never "broken"
        assert set(app.dataframe[0].value["status"]) <= {"starting", "training", "done"}
    _wait(lambda: job.snapshot().finished, "the 1-epoch job")
    app.run()
    assert not app.exception
    assert job.snapshot().status == "done", job.snapshot().message
    [run] = [p for p in app.runs.iterdir() if p.is_dir()]
    assert (run / "model.pt").exists()
    assert any("Done" in s.value and run.name in s.value for s in app.success)
    table = app.dataframe[0].value
    assert list(table["run"]) == [run.name] and list(table["status"]) == ["done"]
    spec = app.get("plotly_chart")
    assert len(spec) >= 3   # loss, accuracy, and the saved run's curves
    loss = json.loads(spec[0].proto.spec)
    assert len(loss["data"][0]["y"]) == job.snapshot().final_event().data["steps"]


def test_progress_while_running_then_stop(app):
    _on_moons(app, epochs=500)
    app.button(key="train_start").click().run()
    job = _only_job(app)
    _wait(lambda: job.snapshot().last("step") is not None, "a first step")
    app.run()
    assert not app.exception
    assert app.get("progress"), "no progress bar while training"
    assert any(m.label == "ETA" for m in app.metric)
    # The run that is training cannot be deleted: the button is off and the page says why.
    name = job.run_names[0]
    app.selectbox(key="train_delete_run").set_value(name).run()
    app.checkbox(key="train_delete_confirm").check().run()
    assert app.button(key="train_delete_go").disabled
    assert any("still training" in c.value for c in app.caption)
    stop = app.button(key=f"train_stop_{job.id}")
    assert stop.label == "Stop training"
    stop.click().run()
    assert job.stop.is_set()
    assert job.join(TIMEOUT)
    app.run()
    assert not app.exception
    assert job.snapshot().status == "stopped"
    assert any("Stopped by you" in w.value for w in app.warning)
    assert (job.snapshot().run_paths[0] / "model.pt").exists()


def test_diverging_settings_say_what_to_change(app):
    _on_moons(app, epochs=3)
    app.selectbox(key="train_optimizer").set_value("sgd").run()
    app.number_input(key="train_lr").set_value(1e6).run()
    app.button(key="train_start").click().run()
    job = _only_job(app)
    _wait(lambda: job.snapshot().finished, "divergence")
    app.run()
    assert job.snapshot().status == "diverged"
    [msg] = [e.value for e in app.error if "diverged" in e.value]
    assert "lower the learning rate (try 100000 instead of 1e+06)" in msg and "use Adam rather than SGD" in msg


def test_divergence_advice_follows_the_run_settings():
    from ui.common import divergence_advice

    adam = divergence_advice(TrainConfig(optimizer="adam", lr=0.1))
    assert "0.01 instead of 0.1" in adam and "SGD" not in adam and "set gradient clipping" in adam
    sgd = divergence_advice(TrainConfig(optimizer="sgd", lr=1.0, grad_clip=5.0))
    assert "use Adam rather than SGD" in sgd and "harder than 5" in sgd


def test_runs_table_marks_broken_runs_and_deletes_with_confirmation(app):
    broken = app.runs / "broken-run"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    _on_moons(app)
    table = app.dataframe[0].value
    assert list(table["status"]) == ["broken"] and "JSONDecodeError" in table["error"][0]
    assert any("cannot be read" in w.value for w in app.warning)
    app.selectbox(key="train_delete_run").set_value("broken-run").run()
    assert app.button(key="train_delete_go").disabled          # not without the confirmation
    app.checkbox(key="train_delete_confirm").check().run()
    app.button(key="train_delete_go").click().run()
    assert not app.exception
    assert not broken.exists()
    assert any("Deleted run broken-run" in s.value for s in app.success)


# ------------------------------------------------------------------ figures


def test_group_series_groups_a_methods_columns_and_drops_bookkeeping():
    cols = {"step": [1, 2], "loss": [5, 4], "lr": [1, 1], "tau_nat": [1, 1], "tau_adv": [1, 1], "w_nat": [1, 1],
            "w_adv": [1, 1], "H_nat": [1, 1], "loss_nat": [1, 1], "user_tau_adv": [0, 1], "empty": [None, None],
            "kl_robust": [1, 2]}
    assert group_series(cols) == {"tau": ["tau_nat", "tau_adv"], "w": ["w_nat", "w_adv"], "H": ["H_nat"],
                                  "loss": ["loss_nat"], "kl": ["kl_robust"]}


def test_group_series_drops_a_column_that_repeats_the_loss():
    assert group_series({"step": [1, 2], "loss": [2.0, 1.0], "ce": [2.0, 1.0]}) == {}
    assert group_series({"step": [1, 2], "loss": [2.0, 1.0], "ce": [1.5, 0.5]}) == {"ce": ["ce"]}


def test_switch_points_mark_take_over_and_hand_back():
    assert switch_points([1, 2, 3, 4, 5], [0, 1, 1, 0, 1]) == [(2, True), (4, False), (5, True)]
    assert switch_points([1, 2], [1, 1]) == [(1, True)]
    assert switch_points([1, 2, 3], [None, 0, 0]) == []


def test_downsample_keeps_the_ends_and_the_limit():
    x, cols = downsample(list(range(10_000)), {"y": list(range(10_000))}, max_points=100)
    assert len(x) <= 101 and x[0] == 0 and x[-1] == 9999 and cols["y"] == x
    assert downsample([1, 2], {"y": [3, 4]}) == ([1, 2], {"y": [3, 4]})


def test_moving_average_skips_missing_values():
    assert moving_average([None, 1.0, 3.0, float("nan"), 5.0], 2) == [None, 1.0, 2.0, 2.0, 4.0]


def test_curve_figures_carry_the_data():
    steps = {"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0]}
    fig = loss_figure(steps, smooth=2)
    assert list(fig.data[0].y) == [3.0, 2.0, 1.0] and list(fig.data[1].y) == [3.0, 2.5, 1.5]
    fig = accuracy_figure({"epoch": [1, 2], "test_accuracy": [0.5, 0.75]}, epochs=5)
    assert list(fig.data[0].y) == [50.0, 75.0] and tuple(fig.layout.xaxis.range) == (0.5, 5.5)
    assert "end of each epoch" in accuracy_figure({"epoch": [], "test_accuracy": []}).layout.annotations[0].text
    fig = series_figure([1, 2, 3], {"tau_adv": [1, 2, 3]}, markers=[(2, "you: tau_adv")])
    assert list(fig.data[0].y) == [1, 2, 3]
    assert fig.layout.shapes[0].x0 == 2 and fig.layout.annotations[0].text == "you: tau_adv"
    fig = run_curves_figure([{"epoch": 1, "train_loss": 0.5, "test_accuracy": 0.9}, {"epoch": 2, "train_loss": 0.4}])
    assert list(fig.data[1].y) == [90.0, None]


def test_comparison_figure_computes_w_robust():
    fig = comparison_figure([{"name": "ard", "clean": 0.8, "robust": 0.4}, {"name": "kd", "clean": 0.9,
                                                                            "robust": None}])
    clean, robust, w = fig.data
    assert list(clean.y) == [80.0, 90.0] and list(robust.y) == [40.0, None]
    assert w.y[0] == pytest.approx(60.0) and w.y[1] is None


def test_a_killed_worker_is_reported_as_interrupted(app):
    _on_moons(app, epochs=500)                            # the largest the page allows
    app.button(key="train_start").click().run()
    job = _only_job(app)
    _wait(lambda: job.snapshot().last("epoch") is not None, "a first epoch")
    job.kill()                                            # what the kernel's out-of-memory killer does
    assert job.join(TIMEOUT)
    app.run()
    assert not app.exception
    assert any(e.value.startswith("**Interrupted**") and "killed" in e.value for e in app.error), \
        ([e.value for e in app.error], job.snapshot().status, job.snapshot().message)
    table = app.dataframe[0].value
    assert list(table["status"]) == ["interrupted"]
