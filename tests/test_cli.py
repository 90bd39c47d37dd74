"""The command line as a user runs it: train, runs, eval, and one-line errors with status 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, cwd=ROOT, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "distill_core", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The README's command: papernot-cnn on mnist-5k, 3 epochs, seed 0."""
    runs = tmp_path_factory.mktemp("cli") / "runs"
    res = cli("train", "--dataset", "mnist-5k", "--model", "papernot-cnn", "--method", "standard",
              "--epochs", "3", "--seed", "0", "--runs-dir", str(runs))
    return res, runs


def test_train_reaches_93_percent_and_prints_one_summary_line(trained):
    res, runs = trained
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("done: test accuracy")
    acc = float(last.split("test accuracy ")[1].split("%")[0])
    print(last)
    assert acc >= 93.0
    [folder] = list(runs.iterdir())
    assert str(folder) in last
    assert "step" in res.stderr  # the progress bar


def test_runs_lists_the_run_and_marks_broken_ones(trained):
    _, runs = trained
    (runs / "half-written").mkdir(exist_ok=True)
    (runs / "half-written" / "config.json").write_text("{not json")
    res = cli("runs", "--runs-dir", str(runs))
    assert res.returncode == 0
    assert "done" in res.stdout and "standard" in res.stdout
    assert "half-written" in res.stdout and "broken" in res.stdout


def test_eval_prints_clean_accuracy(trained):
    _, runs = trained
    folder = next(p for p in runs.iterdir() if p.name != "half-written")
    res = cli("eval", str(folder))
    assert res.returncode == 0, res.stderr
    assert "clean test accuracy" in res.stdout


@pytest.mark.parametrize("args", [
    ["train", "--dataset", "imagenet"],
    ["train", "--model", "vit"],
    ["train", "--method", "magic"],
    ["train", "--epochs", "zero"],
    ["train", "--epochs", "0"],
    ["train", "--lr", "-1"],
    ["train", "--set", "T"],
    ["train", "--set", "nosuch=1"],
    ["train", "--dataset", "moons", "--model", "papernot-cnn"],
    ["train", "--dataset", "mnist", "--data-root", "/nonexistent"],
    ["eval", "/nonexistent/run"],
    ["frobnicate"],
])
def test_bad_input_is_one_line_and_exit_2(args, tmp_path):
    res = cli(*args, "--runs-dir", str(tmp_path)) if args[0] == "train" else cli(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())  # nothing written for a rejected command


def test_eval_with_attacks_prints_a_table_and_records_it(trained):
    import json

    _, runs = trained
    folder = next(p for p in runs.iterdir() if p.name != "half-written")
    res = cli("eval", str(folder), "--attacks", "fgsm,pgd", "--n", "50")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[1:4]] == ["clean", "fgsm", "pgd"]
    assert "eval --robust" in res.stdout   # single attacks are not "robust accuracy"
    summary = json.loads((folder / "summary.json").read_text())
    assert "robustness" not in summary
    table = summary["attack_table"]["table"]
    assert [r["attack"] for r in table] == ["clean", "fgsm", "pgd"]
    assert table[2]["accuracy"] < table[0]["accuracy"]  # PGD at eps 0.3 must hurt a standard model
    bad = cli("eval", str(folder), "--attacks", "nosuch")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown attack")


def test_eval_robust_writes_the_autoattack_record_and_runs_shows_it(trained):
    import json

    _, runs = trained
    folder = next(p for p in runs.iterdir() if p.name != "half-written")
    res = cli("eval", str(folder), "--robust", "--protocol", "autoattack-fast", "--n", "40", "--seed", "1")
    assert res.returncode == 0, res.stderr
    assert "robust accuracy:" in res.stdout and "apparent (PGD-CE):" in res.stdout
    rec = json.loads((folder / "summary.json").read_text())["robustness"]
    assert rec["protocol"] == "autoattack-fast" and rec["n"] == 40 and rec["seed"] == 1 and rec["eps"] == 0.3
    assert rec["robust_accuracy"] <= rec["clean_accuracy"]
    assert rec["robust_accuracy"] <= 0.1   # a standard model at eps 0.3
    listing = cli("runs", "--runs-dir", str(runs))
    assert f"{100 * rec['robust_accuracy']:.2f}%" in listing.stdout


@pytest.mark.parametrize("args", [["--protocol", "pgd-20"], ["--n", "0"]])
def test_eval_robust_bad_settings_exit_2(trained, args):
    _, runs = trained
    folder = next(p for p in runs.iterdir() if p.name != "half-written")
    res = cli("eval", str(folder), "--robust", *args)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error: ")


def test_eval_robust_on_a_broken_run_is_one_line_and_exit_2(tmp_path):
    run = tmp_path / "broken-run"
    run.mkdir()
    (run / "config.json").write_text('{"dataset": "mnist-5k", "model": "small-cnn", "train": {"seed": 0}}')
    (run / "summary.json").write_text('{"status": "done"}')
    (run / "model.pt").write_bytes(b"not a checkpoint")
    res = cli("eval", str(run), "--robust")
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
