"""The command line as a user runs it: train, runs, eval, and one-line errors with status 2."""

import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

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


# ---------------------------------------------------------------- usage errors name a command that exists


@pytest.mark.parametrize("args, command", [
    ([], "python -m distill_core --help"),
    (["frobnicate"], "python -m distill_core --help"),
    (["--nosuch"], "python -m distill_core --help"),
    (["train", "--bogus"], "python -m distill_core train --help"),
    (["train", "--optimizer", "rmsprop"], "python -m distill_core train --help"),
    (["runs", "extra"], "python -m distill_core runs --help"),
    (["zoo"], "python -m distill_core zoo --help"),
    (["reproduce", "nosuch"], "python -m distill_core reproduce --help"),
])
def test_usage_errors_point_to_the_help_of_the_command_given(args, command, capsys):
    from distill_core.__main__ import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert err[0].endswith(f"(see `{command}`)"), err[0]
    hint = re.search(r"see `([^`]*)`", err[0]).group(1)
    assert shlex.split(hint)[:3] == ["python", "-m", "distill_core"] and "distill_core distill_core" not in hint


def test_the_hinted_help_commands_exist():
    for sub in ([], ["train"]):
        res = cli(*sub, "--help")
        assert res.returncode == 0 and res.stdout.startswith("usage: python -m distill_core"), res.stderr


# ---------------------------------------------------------------- checkpoints: one error line, exit 2


def _teacher_state() -> dict:
    from distill_core.data import load_dataset
    from distill_core.models import build_model

    torch.manual_seed(0)
    return build_model("papernot-cnn", load_dataset("mnist-5k", "test")[1]).state_dict()


def _bad_checkpoint(kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "garbage":
        return b"\x00 these bytes are no checkpoint \xff" * 16
    if kind == "pickled code":
        class Call:
            def __reduce__(self):
                return (print, ("this must never run",))
        torch.save({"state_dict": {"w": Call()}}, buf)
    elif kind == "numpy array":
        torch.save({"state_dict": _teacher_state(), "history": np.zeros(3)}, buf)
    elif kind == "other architecture":
        torch.save({"fc.weight": torch.zeros(3, 3)}, buf)
    return buf.getvalue()


def _one_error_line(res) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "\x1b" not in res.stderr and "weights_only" not in res.stderr and "Traceback" not in res.stderr
    assert "this must never run" not in res.stdout + res.stderr
    return lines[0]


@pytest.mark.parametrize("kind", ["garbage", "pickled code", "numpy array", "other architecture"])
def test_a_bad_teacher_checkpoint_is_one_error_line_and_exit_2(kind, tmp_path):
    path = tmp_path / "teacher.pt"
    path.write_bytes(_bad_checkpoint(kind))
    runs = tmp_path / "runs"
    res = cli("train", "--method", "kd", "--teacher", f"teacher=papernot-cnn:{path}", "--epochs", "1",
              "--runs-dir", str(runs))
    line = _one_error_line(res)
    assert str(path) in line
    assert not runs.exists() or not list(runs.iterdir())     # nothing written for a rejected command


def test_a_teacher_checkpoint_with_numpy_scalars_and_a_wrapper_trains(tmp_path):
    """The public-checkpoint shape: {"state_dict": {"module.<key>": ...}, "epoch": np.int64, "best_acc": np.float64}."""
    path = tmp_path / "teacher.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _teacher_state().items()}, "epoch": np.int64(3),
                "best_acc": np.float64(0.9)}, path)
    res = cli("train", "--method", "kd", "--teacher", f"teacher=papernot-cnn:{path}", "--max-steps", "1",
              "--quiet", "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stderr
    assert any(line.startswith("done: ") for line in res.stdout.splitlines()), res.stdout


@pytest.mark.parametrize("kind", ["garbage", "pickled code", "numpy array"])
def test_eval_on_a_run_with_a_corrupted_model_is_one_error_line_and_exit_2(kind, tmp_path):
    from distill_core.data import load_dataset
    from distill_core.runs import create_run

    info = load_dataset("mnist-5k", "test")[1]
    writer = create_run(tmp_path / "runs", {"dataset": "mnist-5k", "model": "papernot-cnn", "method": "standard",
                                            "info": info.to_dict(), "train": {"seed": 0}})
    (writer.path / "model.pt").write_bytes(_bad_checkpoint(kind))
    writer.finish({"status": "done"})
    line = _one_error_line(cli("eval", str(writer.path)))
    assert "model.pt" in line


# ---------------------------------------------------------------- reproductions record no machine's paths


def _stub_reproduction(monkeypatch):
    """bss with its experiment replaced by a stub: what is left is the recording (command, log, files)."""
    from distill_core import reproduce

    module = reproduce.MODULES["bss"]
    monkeypatch.setattr(module, "run", lambda settings, log: {"expectations": [
        {"claim": "stub", "shown": True, "status": "shown", "detail": "recording only"}]})
    monkeypatch.setattr(module, "markdown", lambda results: "stub tables")


def test_a_run_into_a_folder_inside_the_repository_records_a_relative_path(monkeypatch, tmp_path, capsys):
    from distill_core.__main__ import main

    _stub_reproduction(monkeypatch)
    (ROOT / "artifacts").mkdir(exist_ok=True)                     # git-ignored
    out = Path(tempfile.mkdtemp(prefix="reproduce-", dir=ROOT / "artifacts"))
    try:
        monkeypatch.chdir(tmp_path)                                # from anywhere, given an absolute path
        assert main(["reproduce", "bss", "--quick", "--out", str(out)]) == 0
        results = json.loads((out / "results.json").read_text())
        relative = out.relative_to(ROOT).as_posix()
        assert results["command"] == f"python -m distill_core reproduce bss --quick --out {relative} --seed 0"
        md = (out / "results.md").read_text()
        assert results["command"] in md and str(ROOT) not in md + json.dumps(results)
        assert f"writing to {relative}" in capsys.readouterr().err
    finally:
        import shutil

        shutil.rmtree(out, ignore_errors=True)


def test_a_run_outside_the_repository_keeps_its_absolute_path_and_the_default_folder_needs_no_flag(tmp_path):
    from distill_core.reproduce import cli_command, default_out, recorded_path

    assert cli_command("bss", True, tmp_path / "x") == f"python -m distill_core reproduce bss --quick --out " \
        f"{shlex.quote(str((tmp_path / 'x').resolve()))} --seed 0"
    for experiment in ("papernot", "bss", "mtard"):       # the CLI passes the default folder as an absolute path
        assert cli_command(experiment, out=default_out(experiment)) == \
            f"python -m distill_core reproduce {experiment} --seed 0"
    assert recorded_path(ROOT / "assets" / "x") == "assets/x"


ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:work|home|root|tmp|Users|mnt|private|var|opt|srv|data)/")


@pytest.mark.parametrize("experiment", ["papernot", "bss", "mtard"])
def test_the_shipped_reproductions_name_no_absolute_path(experiment):
    folder = ROOT / "assets" / "reproductions" / experiment
    results = json.loads((folder / "results.json").read_text())
    assert all(not arg.startswith("/") for arg in shlex.split(results["command"])), results["command"]
    for text in (json.dumps(results), (folder / "results.md").read_text()):
        assert str(ROOT) not in text and not ABSOLUTE.search(text)


# ---------------------------------------------------------------- sweep: one knob, each run measured


SWEEP = ["sweep", "--dataset", "moons", "--model", "mlp", "--epochs", "1", "--lr", "0.01",
         "--protocol", "autoattack-fast", "--n", "50"]


def test_sweep_trains_measures_and_prints_the_table(tmp_path):
    runs = tmp_path / "runs"
    res = cli(*SWEEP, "--method", "trades", "--knob", "beta", "--values", "6,0.5", "--set", "steps=3",
              "--runs-dir", str(runs))
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()[:3]
    assert header.split()[:4] == ["value", "seed", "clean", "%"] and "robust % (AutoAttack)" in header
    assert [r.split()[:2] for r in rows] == [["6", "0"], ["0.5", "0"]]
    assert len(list(runs.iterdir())) == 2
    ids = set()
    for row in rows:
        value, _, clean, robust, apparent, path = row.split()
        summary = json.loads((Path(path) / "summary.json").read_text())
        rec = summary["robustness"]
        assert summary["status"] == "done" and summary["tags"]["knob"] == "beta"
        assert summary["tags"]["value"] == float(value) and summary["tags"]["seed"] == 0
        assert clean == f"{100 * summary['test_accuracy']:.2f}"
        assert robust == f"{100 * rec['robust_accuracy']:.2f}"
        assert apparent == f"{100 * rec['apparent_robust_accuracy']:.2f}"
        assert rec["protocol"] == "autoattack-fast" and rec["n"] == 50
        ids.add(summary["tags"]["sweep"])
    assert len(ids) == 1 and ids.pop().startswith("trades-beta-")
    assert "AutoAttack fast" in res.stdout
    assert "step" in res.stderr and "[2/2] beta=0.5 seed 0: measured" in res.stderr      # the progress


@pytest.mark.parametrize("args, words", [
    (["--method", "trades", "--knob", "gamma", "--values", "1"], "has no knob 'gamma'"),
    (["--method", "trades", "--knob", "steps", "--values", "2,0.5"], "expects int"),
    (["--method", "trades", "--knob", "beta", "--values", "1,abc"], "expects float"),
    (["--method", "trades", "--knob", "beta", "--values", ""], "at least one value"),
    (["--method", "trades", "--knob", "beta", "--values", ","], "at least one value"),
    (["--method", "trades", "--knob", "beta", "--values", "-1"], "must be >= 0"),
    (["--method", "kd", "--knob", "a", "--values", "0.5,1.5", "--teacher", "teacher=x"], "must be <= 1"),
    (["--method", "magic", "--knob", "T", "--values", "1"], "unknown method 'magic'"),
    (["--method", "trades", "--values", "1"], "required: --knob"),
    (["--method", "trades", "--knob", "beta", "--values", "1", "--protocol", "pgd-ce"], "invalid choice"),
    (["--method", "trades", "--knob", "beta", "--values", "1", "--set", "beta=2"], "is the knob swept"),
    (["--method", "trades", "--knob", "beta", "--values", "1", "--n", "0"], "n must be"),
    (["--method", "trades", "--knob", "beta", "--values", "1", "--seeds", "a"], "seeds must be"),
    (["--method", "trades", "--knob", "beta", "--values", "1", "--epochs", "0"], "epochs must be"),
    (["--method", "kd", "--knob", "T", "--values", "1", "--teacher", "teacher=no/such"], "no run folder"),
])
def test_sweep_bad_input_is_one_line_and_exit_2(args, words, tmp_path, capsys):
    from distill_core.__main__ import main

    runs = tmp_path / "runs"
    assert main(["sweep", "--dataset", "moons", "--model", "mlp", *args, "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    assert not runs.exists()                                  # nothing written for a rejected sweep


def test_sweep_ctrl_c_keeps_the_finished_run_saves_the_current_one_stopped_and_starts_no_more(tmp_path):
    import signal
    import threading

    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    # The knob is the epochs: the second run would take hours, so Ctrl-C reaches it while it trains.
    proc = subprocess.Popen([sys.executable, "-m", "distill_core", *SWEEP, "--method", "standard", "--knob", "epochs",
                             "--values", "1,100000,2", "--runs-dir", str(runs)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("[2/3]"):              # the second run's progress bar: it trains
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=240)
    finally:
        watchdog.cancel()
    err = "".join(seen) + err
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopping: the current run is saved as stopped" in err
    rows = out.splitlines()[1:3]
    first, second = (json.loads((Path(r.split()[5]) / "summary.json").read_text()) for r in rows)
    assert first["status"] == "done" and first["robustness"]["n"] == 50 and first["tags"]["value"] == 1
    assert second["status"] == "stopped" and "robustness" not in second and second["tags"]["value"] == 100000
    assert "(stopped: stopped by the user)" in rows[1]
    assert len(list(runs.iterdir())) == 2 and "1 of 3 run(s) not started" in out
    assert "eval RUN --robust" in out
