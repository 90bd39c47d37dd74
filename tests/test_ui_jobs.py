"""The app's jobs (ui/jobs.py + the worker process) without streamlit: done, stop, two at once, divergence,
"@0" teachers, live controls, a killed worker, the server's job board, downsampled series, and a sweep queued as
one job whose runs are measured (AutoAttack) in the worker."""

import os
import sys
import time
import types

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


def test_job_runs_to_done_and_saves_its_run(runs_dir, jobs, tmp_path, monkeypatch):
    # Streamlit runs its script as __main__; spawn would re-run that file in the worker. One that fails outside
    # Streamlit (AppTest.from_function writes such a script) must not kill the worker.
    script = tmp_path / "streamlit_script.py"
    script.write_text("raise SystemExit('this script must not run in the worker')\n")
    fake_main = types.ModuleType("__main__")
    fake_main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake_main)
    job = TrainingJob([_moons(epochs=2)], runs_dir)
    jobs.append(job.start())
    assert sys.modules["__main__"] is fake_main
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


# ---------------------------------------------------------------- a sweep queued as one job: train, then measure


EVALUATE = {"protocol": "autoattack-fast", "n": 40}


def _sweep(values, epochs: int = 1) -> list[TrainSpec]:
    from distill_core.lab.sweeps import sweep_specs

    return sweep_specs(_moons(epochs=epochs), "lr", values)


def test_a_sweep_job_measures_each_run_and_reports_it(runs_dir, jobs):
    job = TrainingJob(_sweep([0.01, 0.02]), runs_dir, evaluate=EVALUATE)
    jobs.append(job.start())
    seen = set()
    end = time.time() + TIMEOUT
    while not job.snapshot().finished and time.time() < end:
        seen.add(job.snapshot().activity())
        time.sleep(0.01)
    assert job.join(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "done", snap.message
    assert "training run 1 of 2" in seen and snap.activity() == "" and not snap.measuring
    assert len(snap.run_paths) == 2 and set(snap.measured) == {0, 1}
    assert snap.measure is not None and (snap.measure.stage, snap.measure.fraction, snap.measure.done) == (1, 1.0, True)
    for stage, path in enumerate(snap.run_paths):
        summary = read_run(path).summary
        assert summary["status"] == "done" and summary["robustness"] == snap.measured[stage]
        assert summary["robustness"]["protocol"] == "autoattack-fast" and summary["robustness"]["n"] == 40
        assert summary["tags"]["value"] == [0.01, 0.02][stage] and summary["pid"] != os.getpid()


def test_stop_in_a_measured_sweep_ends_the_run_measures_it_and_starts_no_more(runs_dir, jobs):
    job = TrainingJob(_sweep([0.01, 0.02], epochs=500), runs_dir, evaluate=EVALUATE)
    jobs.append(job.start())
    _wait_for_step(job)
    job.request_stop()
    assert job.join(TIMEOUT)
    snap = job.snapshot()
    assert snap.status == "stopped" and set(snap.measured) == {0}
    [path] = snap.run_paths
    run = read_run(path)
    assert run.status == "stopped" and run.summary["robustness"] == snap.measured[0]
    assert len(list_runs(runs_dir)) == 1


class _ListQueue:
    """The worker's queue in this process: keeps every message; sets ``stop`` at stage 0's first measure message."""

    def __init__(self, stop):
        self.items, self.stop = [], stop

    def put(self, item):
        self.items.append(item)
        if item[0] == "measure" and item[1] == 0:
            self.stop.set()

    def close(self):
        pass

    def join_thread(self):
        pass


def test_the_worker_finishes_a_measurement_after_stop_then_cancels_the_rest(runs_dir):
    import threading

    from ui.worker import SharedControls, work

    stop = threading.Event()
    q = _ListQueue(stop)
    work(_sweep([0.01, 0.02, 0.03]), str(runs_dir), q, stop, SharedControls([]), {**EVALUATE, "seed": 0})
    kinds = [(kind, stage) for kind, stage, _ in q.items if kind not in ("event", "measure")]
    assert kinds == [("run", 0), ("measured", 0), ("cancelled", 1), ("end", 1)]
    fractions = [payload[0] for kind, _, payload in q.items if kind == "measure"]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    [run] = list_runs(runs_dir)
    assert run.status == "done" and run.summary["robustness"]["n"] == 40


class _FakeProcess:
    sentinel, exitcode = None, 0

    def join(self, timeout=None):
        pass

    def is_alive(self):
        return False


def _read_script(job, messages):
    """Run the job's reader over ``messages`` (the last one "end"); returns the job's snapshot after each."""
    snaps, it = [], iter(messages)

    class Q:
        started = False

        def get(self, timeout=None):
            if Q.started:
                snaps.append(job.snapshot())            # the state the previous message left
            Q.started = True
            return next(it)

        def empty(self):
            return False

    job._process = _FakeProcess()
    job._read(Q())
    snaps.append(job.snapshot())
    return snaps


def _event(kind, **data):
    from distill_core.train import Event

    return Event(kind, 0, 0, dict(data))


def test_the_job_stays_at_work_while_it_measures_and_says_what_it_does(runs_dir):
    from ui.jobs import MeasureProgress

    record = {"protocol": "autoattack-fast", "robust_accuracy": 0.5}
    messages = [("run", 0, str(runs_dir / "a")), ("event", 0, _event("start")), ("event", 0, _event("done")),
                ("measure", 0, (0.5, "APGD-CE: robust accuracy 50.0%")), ("measured", 0, record),
                ("run", 1, str(runs_dir / "b")), ("event", 1, _event("stopped", reason="stopped by the user")),
                ("measure", 1, (0.0, "loading the model")), ("measured", 1, record), ("end", 1, None)]
    job = TrainingJob(_sweep([0.01, 0.02]), runs_dir, evaluate=EVALUATE)
    after = dict(zip([f"{k}{s}" if k != "event" else f"{p.kind}{s}" for k, s, p in messages],
                     _read_script(job, messages)))
    assert after["start0"].activity() == "training run 1 of 2"
    assert after["done0"].status == "running" and not after["done0"].finished           # measured next
    m = after["measure0"]
    assert m.measuring and m.activity() == "measuring run 1 of 2" and m.measure.fraction == 0.5
    assert after["measured0"].measured == {0: record} and not after["measured0"].measuring
    assert after["measured0"].measure == MeasureProgress(0, 1.0, "measured", done=True)
    assert after["run1"].activity() == "training run 2 of 2"
    assert after["stopped1"].status == "running" and after["measure1"].activity() == "measuring run 2 of 2"
    assert after["end1"].status == "stopped" and after["end1"].finished and "stopped" in after["end1"].message
    assert after["end1"].measured == {0: record, 1: record}
    # Without evaluate the last stage's ending is the job's at once; an earlier "done" is not (the next stage
    # follows), so a page polling between two stages never sees the job finished. Stop between stages cancels.
    single = TrainingJob(_sweep([0.01]), runs_dir)
    assert _read_script(single, [*messages[:3], ("end", 0, None)])[2].status == "done"
    two = _read_script(TrainingJob(_sweep([0.01, 0.02]), runs_dir),
                       [*messages[:3], messages[5], ("event", 1, _event("done")), ("end", 1, None)])
    assert [s.status for s in two] == ["running", "running", "running", "running", "done", "done"]
    cancelled = TrainingJob(_sweep([0.01, 0.02, 0.03]), runs_dir, evaluate=EVALUATE)
    last = _read_script(cancelled, [*messages[:5], ("cancelled", 1, None), ("end", 1, None)])[-1]
    assert last.status == "stopped" and last.message == "stopped by the user; 2 run(s) not started"


@pytest.mark.parametrize("evaluate, words", [({"protocol": "pgd-20"}, "unknown protocol"), ({"n": 0}, "n must be")])
def test_a_job_refuses_bad_evaluate_settings(runs_dir, evaluate, words):
    with pytest.raises(ValueError, match=words):
        TrainingJob([_moons()], runs_dir, evaluate=evaluate)
    defaults = {"protocol": "autoattack-fast", "n": 500, "seed": 0}
    assert TrainingJob([_moons()], runs_dir, evaluate={}).evaluate == defaults


def test_a_failed_measurement_is_the_stage_error_and_names_the_run(runs_dir):
    import threading

    from ui.worker import SharedControls, work

    q = _ListQueue(threading.Event())
    work(_sweep([0.01, 0.02]), str(runs_dir), q, threading.Event(), SharedControls([]), {"protocol": "nope", "n": 5})
    errors = [p for kind, _, p in q.items if kind == "event" and p.kind == "error"]
    [run] = list_runs(runs_dir)                                  # trained, then the measurement failed: no second
    assert len(errors) == 1 and f"measuring the robustness of run {run.name} failed" in errors[0].data["reason"]
    assert "unknown protocol 'nope'" in errors[0].data["reason"] and q.items[-1][0] == "end"
