"""The app's jobs (ui/jobs.py + the worker process) without streamlit: done, stop, two at once, divergence,
"@0" teachers, live controls, a killed worker, the server's job board, downsampled series."""

import os
import time

import pytest
import torch

from distill_core.runs import list_runs, load_model, read_run
from distill_core.spec import TrainSpec
from distill_core.train import TrainConfig
from ui.jobs import JobBoard, TrainingJob, job_series

TIMEOUT = 120   # seconds; the suite shares two cores


def _moons(epochs: int = 1, **train) -> TrainSpec:
    return TrainSpec(dataset="moons", model="mlp", method="standard",
                     train=TrainConfig(epochs=epochs, batch_size=64, lr=1e-2, device="cpu", **train))


def _wait_for_step(job: TrainingJob, timeout: float = TIMEOUT) -> None:
    end = time.time() + timeout
    while job.snapshot().last("step") is None:
        assert job.snapshot().status in ("starting", "running"), job.snapshot().message
        assert time.time() < end, "no training step within the timeout"
        time.sleep(0.05)


@pytest.fixture
def jobs():
    """Jobs started by a test; stopped and joined at its end so no thread outlives it."""
    started: list[TrainingJob] = []
    yield started
    for job in started:
        job.request_stop()
        job.join(TIMEOUT)


def test_job_runs_to_done_and_saves_its_run(runs_dir, jobs):
    job = TrainingJob([_moons(epochs=2)], runs_dir)
    jobs.append(job.start())
    assert job.join(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "done" and snap.finished and snap.progress() == 1.0 and snap.eta_s() is None
    assert [e.kind for e in snap.events][0] == "start" and snap.events[-1].kind == "done"
    assert all(e.data["stage"] == 0 for e in snap.events)
    [path] = snap.run_paths
    assert job.run_names == [path.name]      # named before the folder existed
    run = read_run(path)
    assert run.status == "done" and not run.broken
    assert run.summary["test_accuracy"] == pytest.approx(snap.final_event().data["test_accuracy"])
    load_model(path)
    assert run.summary["pid"] != os.getpid()              # trained in the worker process, not in this one
    series = job.series(max_points=None)
    n = len(series["steps"]["step"])
    assert n == snap.final_event().data["steps"] > 0
    assert all(len(col) == n for col in series["steps"].values())
    assert series["evals"]["epoch"] == [1, 2]
    assert snap.elapsed_s() > 0 and snap.ended is not None


def test_progress_and_eta_while_running(runs_dir, jobs):
    job = TrainingJob([_moons(epochs=200)], runs_dir)
    jobs.append(job.start())
    _wait_for_step(job)
    snap = job.snapshot()
    assert snap.status == "running" and not snap.finished
    assert 0 < snap.progress() < 1
    assert snap.eta_s() is not None and snap.eta_s() > 0


def test_stop_mid_run_gives_stopped_and_a_loadable_run(runs_dir, jobs):
    job = TrainingJob([_moons(epochs=500)], runs_dir)
    jobs.append(job.start())
    _wait_for_step(job)
    job.request_stop()
    assert job.join(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "stopped"
    assert "stopped" in snap.message
    assert snap.final_event().data["epochs"] < 500
    run = read_run(snap.run_paths[0])
    assert run.status == "stopped" and not run.broken
    model, info, config = load_model(snap.run_paths[0])
    assert config["method"] == "standard" and info.name == "moons"
    assert torch.isfinite(model(torch.rand(4, 2))).all()


def test_two_jobs_at_once_both_finish_and_both_runs_are_saved(runs_dir, jobs):
    a = TrainingJob([_moons(epochs=3, seed=1)], runs_dir)
    b = TrainingJob([_moons(epochs=3, seed=2)], runs_dir)
    jobs += [a.start(), b.start()]
    assert a.join(TIMEOUT) and b.join(TIMEOUT)
    assert a.snapshot().status == b.snapshot().status == "done"
    paths = a.snapshot().run_paths + b.snapshot().run_paths
    assert len(set(paths)) == 2
    for p in paths:
        assert read_run(p).status == "done"
        load_model(p)
    assert read_run(paths[0]).config["train"]["seed"] == 1 and read_run(paths[1]).config["train"]["seed"] == 2


def test_diverging_setting_ends_diverged_with_a_message(runs_dir, jobs):
    spec = _moons(epochs=3)
    spec.train = TrainConfig(epochs=3, optimizer="sgd", lr=1e6, momentum=0.0, device="cpu")
    job = TrainingJob([spec], runs_dir)
    jobs.append(job.start())
    assert job.join(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "diverged"
    assert "lr" in snap.message and "smaller lr" in snap.message
    assert read_run(snap.run_paths[0]).status == "diverged"
    model, _, _ = load_model(snap.run_paths[0])
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_later_stage_uses_the_first_stage_run_as_teacher(runs_dir, jobs):
    teacher = _moons(epochs=2)
    student = TrainSpec(dataset="moons", model="mlp", method="kd", teachers={"teacher": "@0"},
                        model_options={"hidden": [8]}, train=TrainConfig(epochs=1, lr=1e-2, device="cpu"))
    job = TrainingJob([teacher, student], runs_dir, label="teacher then student")
    jobs.append(job.start())
    assert job.join(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "done", snap.message
    assert snap.stage == 1 and snap.stages == 2 and len(snap.run_paths) == 2
    first, second = snap.run_paths
    assert read_run(second).config["teachers"] == {"teacher": str(first)}
    assert read_run(second).config["method"] == "kd"
    assert {e.data["stage"] for e in snap.events} == {0, 1}
    assert len(job.series(stage=1)["evals"]["epoch"]) == 1


def test_a_failing_stage_ends_as_error_with_the_reason(runs_dir, jobs):
    bad = TrainSpec(dataset="moons", model="mlp", method="kd", teachers={"teacher": "no/such-model"},
                    train=TrainConfig(epochs=1, device="cpu"))
    job = TrainingJob([bad], runs_dir)
    jobs.append(job.start())
    assert job.join(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "error" and "no/such-model" in snap.message
    assert snap.events[-1].kind == "error" and "traceback" in snap.events[-1].data


def test_reference_to_a_stage_not_run_yet_is_an_error(runs_dir, jobs):
    spec = TrainSpec(dataset="moons", model="mlp", method="kd", teachers={"teacher": "@1"},
                     train=TrainConfig(epochs=1, device="cpu"))
    job = TrainingJob([spec], runs_dir)
    jobs.append(job.start())
    assert job.join(TIMEOUT)
    assert job.snapshot().status == "error" and "@1" in job.snapshot().message


def test_controls_reach_the_method_at_its_next_step(runs_dir, jobs):
    spec = TrainSpec(dataset="moons", model="mlp", method="mtard", model_options={"hidden": [8]},
                     method_config={"steps": 2},
                     teachers={"clean_teacher": "@0", "robust_teacher": "@0"},
                     train=TrainConfig(epochs=200, device="cpu"))
    job = TrainingJob([_moons(epochs=1), spec], runs_dir)
    job.controls.set("tau_adv", 4.5)
    jobs.append(job.start())
    end = time.time() + TIMEOUT
    while not job.series(stage=1)["steps"]["step"]:
        assert not job.snapshot().finished, job.snapshot().message
        assert time.time() < end
        time.sleep(0.05)
    steps = job.series(stage=1)["steps"]
    assert steps["tau_adv"][0] == 4.5 and steps["user_tau_adv"][0] == 1.0 and steps["user_tau_nat"][0] == 0.0
    # A takeover set while the run goes reaches the worker at its next step.
    job.controls.set("tau_nat", 7.0)
    end = time.time() + TIMEOUT
    while job.series(stage=1)["steps"]["tau_nat"][-1] != 7.0:
        assert not job.snapshot().finished and time.time() < end, job.snapshot().message
        time.sleep(0.05)
    job.controls.clear("tau_nat")
    with pytest.raises(KeyError):
        job.controls.set("beta", 1.0)                     # not a live control of MTARD


def test_a_job_starts_once_and_needs_a_spec(runs_dir, jobs):
    with pytest.raises(ValueError):
        TrainingJob([], runs_dir)
    job = TrainingJob([_moons()], runs_dir)
    jobs.append(job.start())
    with pytest.raises(RuntimeError):
        job.start()
    assert job.label == "standard · moons · mlp"


def test_a_killed_worker_ends_the_job_as_interrupted_and_lists_its_run_so(runs_dir, jobs):
    job = TrainingJob([_moons(epochs=100_000)], runs_dir)
    jobs.append(job.start())
    end = time.time() + TIMEOUT
    while not (job.snapshot().last("epoch") is not None):
        assert not job.snapshot().finished and time.time() < end, job.snapshot().message
        time.sleep(0.05)
    job.kill()                                            # what the kernel's OOM killer does
    assert job.join(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "interrupted" and snap.finished
    assert "killed" in snap.message
    [run] = list_runs(runs_dir)
    assert run.status == "interrupted"                    # its process is gone: not "running" forever
    model, _, _ = load_model(run.path)                    # the last finished epoch is kept
    assert torch.isfinite(model(torch.rand(4, 2))).all()


def test_the_board_shows_every_job_to_every_session(runs_dir, jobs):
    board = JobBoard()
    job = board.add(TrainingJob([_moons(epochs=500)], runs_dir, origin="train"))
    jobs.append(job.start())
    _wait_for_step(job)
    # A reloaded tab has no session state: it finds the job on the server's board.
    assert board.all() == [job] and board.all(origin="train") == [job] and board.all(origin="multi-teacher") == []
    assert board.running() == [job] and board.training(job.run_names[0])
    board.get(job.id).request_stop()                      # its Stop works from there
    assert job.join(TIMEOUT) and job.snapshot().status == "stopped"
    assert board.running() == [] and not board.training(job.run_names[0])
    board.clear()
    assert board.all() == []


def test_live_series_are_thinned_to_what_a_chart_draws(runs_dir, jobs):
    job = TrainingJob([_moons(epochs=20)], runs_dir)
    jobs.append(job.start())
    assert job.join(TIMEOUT)
    full = job.series(max_points=None)["steps"]
    thin = job.series(max_points=50)["steps"]
    assert len(full["step"]) > 100
    assert 25 <= len(thin["step"]) <= 51 and thin["step"][-1] == full["step"][-1] and thin["step"][0] == full["step"][0]
    assert set(thin) == set(full) and all(len(c) == len(thin["step"]) for c in thin.values())
    assert job_series([]) == {"steps": {"step": []}, "evals": {"epoch": [], "step": [], "test_accuracy": []}}
