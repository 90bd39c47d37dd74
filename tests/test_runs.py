"""The run registry: atomic files, safe listing of broken folders, safe weight loading."""

import json

import pytest
import torch

from distill_core.data import load_dataset
from distill_core.models import build_model
from distill_core.runs import (
    RunError,
    create_run,
    delete_run,
    list_runs,
    load_state_dict,
    load_weights,
    read_metrics,
    update_summary,
)


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
    delete_run(writer.path)
    assert list_runs(runs_dir) == []
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(RunError):
        delete_run(other)
    assert (other / "notes.txt").exists()
