"""The run registry: atomic files, safe listing of broken folders, safe weight loading, killed runs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from distill_core import runs as runs_module
from distill_core.__main__ import main as cli_main
from distill_core.data import load_dataset
from distill_core.models import build_model
from distill_core.runs import (
    STALE_AFTER_S,
    RunError,
    create_run,
    delete_run,
    is_live,
    list_runs,
    load_model,
    load_state_dict,
    load_weights,
    read_metrics,
    read_run,
    update_summary,
)

ROOT = Path(__file__).resolve().parents[1]
LINUX = Path("/proc/self/stat").exists()


def _config():
    _, info = load_dataset("moons", "test")
    return {"dataset": "moons", "model": "mlp", "method": "standard", "train": {"seed": 0}, "info": info.to_dict()}


def test_run_folder_has_the_four_files(runs_dir):
    writer = create_run(runs_dir, _config())
    writer.log({"epoch": 1, "test_accuracy": 0.5})
    _, info = load_dataset("moons", "test")
    writer.save_model(build_model("mlp", info))
    writer.finish({"status": "done", "epochs": 1, "seconds": 1.0, "test_accuracy": 0.5})
    names = sorted(p.name for p in writer.path.iterdir())
    assert names == ["config.json", "metrics.jsonl", "model.pt", "summary.json"]
    summary = json.loads((writer.path / "summary.json").read_text())
    for key in ("method", "dataset", "model", "status", "epochs", "seconds", "test_accuracy"):
        assert key in summary
    [run] = list_runs(runs_dir)
    assert run.status == "done" and run.row()["test_accuracy"] == 0.5


def test_two_runs_with_the_same_config_get_distinct_folders(runs_dir):
    a, b = create_run(runs_dir, _config()), create_run(runs_dir, _config())
    assert a.path != b.path and len(list_runs(runs_dir)) == 2


@pytest.mark.parametrize("damage", ["no_config", "bad_json", "not_object", "no_model", "empty"])
def test_broken_folders_are_listed_as_broken(runs_dir, damage):
    good = create_run(runs_dir, _config())
    good.finish({"status": "running"})
    bad = create_run(runs_dir, _config())
    bad.finish({"status": "done"})
    if damage == "no_config":
        (bad.path / "config.json").unlink()
    elif damage == "bad_json":
        (bad.path / "summary.json").write_text('{"status": "do')
    elif damage == "not_object":
        (bad.path / "config.json").write_text("[1, 2]")
    elif damage == "empty":
        for p in bad.path.iterdir():
            p.unlink()
    # "no_model": status done but model.pt never written
    runs = {r.name: r for r in list_runs(runs_dir)}
    assert runs[bad.path.name].broken and runs[bad.path.name].error
    assert not runs[good.path.name].broken


def test_metrics_reader_skips_a_torn_line(runs_dir):
    writer = create_run(runs_dir, _config())
    writer.log({"epoch": 1})
    with open(writer.path / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "test_acc')
    assert read_metrics(writer.path) == [{"epoch": 1}]


def test_no_temporary_files_left_behind(runs_dir):
    writer = create_run(runs_dir, _config())
    _, info = load_dataset("moons", "test")
    writer.save_model(build_model("mlp", info))
    writer.finish({"status": "done"})
    update_summary(writer.path, robustness={"x": 1})
    assert not [p for p in writer.path.iterdir() if p.name.startswith(".")]


def test_weights_only_loading_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"w": Evil()}, path)
    with pytest.raises(RunError, match="not a loadable"):
        load_state_dict(path)
    with pytest.raises(RunError):
        load_state_dict(b"garbage bytes")
    with pytest.raises(RunError, match="not a state dict"):
        torch.save([torch.zeros(1)], path)
        load_state_dict(path)


def test_wrong_architecture_is_a_clear_error(tmp_path):
    _, info = load_dataset("mnist-5k", "test")
    small = build_model("small-cnn", info)
    with pytest.raises(RunError, match="does not fit"):
        load_weights(build_model("papernot-cnn", info), small.state_dict())


def test_delete_run_refuses_other_folders(runs_dir, tmp_path):
    writer = create_run(runs_dir, _config())
    writer.finish({"status": "error", "epochs": 0})
    delete_run(writer.path)
    assert list_runs(runs_dir) == []
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(RunError):
        delete_run(other)
    assert (other / "notes.txt").exists()


# ------------------------------------------------------------------ live, interrupted


def _dead_pid() -> int:
    """The id of a process that has run and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_of_this_live_process_is_running_and_cannot_be_deleted(runs_dir):
    writer = create_run(runs_dir, _config())
    run = read_run(writer.path)
    assert run.status == "running" and is_live(run) and not run.interrupted
    assert run.summary["pid"] == os.getpid() and run.summary["host"]
    with pytest.raises(RunError, match="still training"):
        delete_run(writer.path)
    assert writer.path.exists()


def test_a_running_run_whose_process_is_gone_is_interrupted_and_deletable(runs_dir):
    writer = create_run(runs_dir, _config())
    update_summary(writer.path, pid=_dead_pid(), process_start=None)
    run = read_run(writer.path)
    assert run.status == "interrupted" and not is_live(run) and not run.broken
    assert "is gone" in run.interrupted and "no model.pt" in run.interrupted
    assert run.row()["status"] == "interrupted" and run.row()["error"] == run.interrupted
    delete_run(writer.path)
    assert not writer.path.exists()


def test_a_finished_run_keeps_its_status_whatever_its_process(runs_dir):
    writer = create_run(runs_dir, _config())
    writer.finish({"status": "error", "reason": "boom"})
    update_summary(writer.path, pid=_dead_pid())
    assert read_run(writer.path).status == "error"


@pytest.mark.skipif(not LINUX, reason="process start times come from /proc")
def test_a_process_id_reused_by_another_process_does_not_keep_a_run_alive(runs_dir):
    writer = create_run(runs_dir, _config())
    assert read_run(writer.path).summary["process_start"]            # recorded on Linux
    update_summary(writer.path, process_start="1")                   # this pid, but started at another time
    assert read_run(writer.path).status == "interrupted"


@pytest.mark.skipif(not LINUX, reason="reads process states from /proc")
def test_a_killed_process_not_yet_reaped_by_its_parent_counts_as_gone(runs_dir):
    writer = create_run(runs_dir, _config())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{proc.pid}/stat")
    try:
        deadline = time.monotonic() + 60
        while stat.read_text().rpartition(")")[2].split()[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)                                           # exited, not waited for: a zombie
        update_summary(writer.path, pid=proc.pid, process_start=None)
        assert read_run(writer.path).status == "interrupted"
    finally:
        proc.wait()


def test_a_run_on_another_host_is_judged_by_its_heartbeat(runs_dir, monkeypatch):
    writer = create_run(runs_dir, _config())
    update_summary(writer.path, host="another-host", pid=1)
    assert read_run(writer.path).status == "running"                  # just touched: alive
    summary = writer.path / "summary.json"
    old = time.time() - STALE_AFTER_S - 60
    os.utime(summary, (old, old))
    run = read_run(writer.path)
    assert run.status == "interrupted" and "no sign of life" in run.interrupted
    monkeypatch.setattr(runs_module, "HEARTBEAT_S", 0.0)
    writer.heartbeat()                                                # the Trainer calls this between steps
    assert summary.stat().st_mtime > old + 30 and read_run(writer.path).status == "running"


def _wait_for(predicate, proc, what: str, limit_s: float = 300.0):
    """Poll until ``predicate()`` holds; fail if the process ends first (a guard, not a timing)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"training ended before {what}: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"no {what} within {limit_s:.0f} s")


def test_a_killed_training_is_interrupted_keeps_its_last_epoch_and_can_be_deleted(runs_dir, capsys):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "distill_core", "train", "--dataset", "moons", "--model", "mlp",
                             "--epochs", "100000", "--device", "cpu", "--quiet", "--runs-dir", str(runs_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        folder = _wait_for(lambda: next((p for p in runs_dir.iterdir() if not p.name.startswith(".")), None),
                           proc, "a run folder")                      # (not the hidden staging folder)
        _wait_for(lambda: (read_run(folder).summary.get("epochs") or 0) >= 2, proc, "two finished epochs")
        live = read_run(folder)                                       # another live process: not interrupted
        assert live.status == "running" and is_live(live) and live.summary["pid"] == proc.pid
        with pytest.raises(RunError, match="still training"):
            delete_run(folder)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    run = read_run(folder)
    assert run.status == "interrupted" and not run.broken and not is_live(run)
    assert f"process {proc.pid}" in run.interrupted and "model.pt holds epoch" in run.interrupted
    epochs = run.summary["epochs"]
    assert epochs >= 2 and len(read_metrics(folder)) >= epochs    # the model is written before the summary
    model, info, _ = load_model(folder)                           # the last finished epoch's weights
    assert torch.isfinite(model(torch.randn(8, *info.input_shape))).all()
    assert [r.status for r in list_runs(runs_dir)] == ["interrupted"]
    assert cli_main(["runs", "--runs-dir", str(runs_dir)]) == 0
    listing = capsys.readouterr().out
    assert folder.name in listing and "interrupted" in listing and "broken" not in listing
    delete_run(folder)
    assert list_runs(runs_dir) == []
