"""The reproductions' pipeline: each quick run writes results.json in the agreed layout and results.md.

These check the pipeline (files, layout, values in range, tables), not the papers' numbers:
the quick runs train for seconds on a few hundred samples. They run single-threaded: their
work is many tiny batches (JSMA iterations on a few images), where a second intra-op thread
gains little and, on a loaded machine, its synchronisation made them 10x slower.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill_core.__main__ import main
from distill_core.reproduce import ReproductionError, check_options, cli_command, default_out, run_reproduction
from distill_core.reproduce import mtard as mtard_module
from distill_core.reproduce._common import jsonable, markdown_table, zoo_teacher

ROOT = Path(__file__).resolve().parents[1]
TOP_KEYS = {"experiment", "quick", "settings", "seconds", "command", "expectations"}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fraction(v) -> bool:
    return isinstance(v, float) and 0.0 <= v <= 1.0


def check_common(results: dict, experiment: str, out: Path) -> str:
    """The keys every results.json has, the expectations' shape, and results.md's verdict lines; returns the md."""
    assert TOP_KEYS <= set(results)
    assert results["experiment"] == experiment and results["quick"] is True
    assert isinstance(results["settings"], dict) and results["settings"]["environment"]["torch"]
    assert isinstance(results["seconds"], float) and results["seconds"] > 0
    assert results["command"].startswith(f"python -m distill_core reproduce {experiment} --quick --out ")
    assert results["expectations"]
    for e in results["expectations"]:
        assert set(e) == {"claim", "shown", "detail"}
        assert isinstance(e["claim"], str) and isinstance(e["shown"], bool) and isinstance(e["detail"], str)
    assert json.loads((out / "results.json").read_text()) == results
    md = (out / "results.md").read_text()
    assert md.startswith("# ") and results["command"] in md
    verdicts = [line for line in md.splitlines() if line.startswith(("- **shown**", "- **not shown**"))]
    assert len(verdicts) == len(results["expectations"])
    return md


# ---------------------------------------------------------------- papernot, through the CLI


@pytest.fixture(scope="module")
def papernot(tmp_path_factory):
    out = tmp_path_factory.mktemp("papernot")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    env.setdefault("OMP_NUM_THREADS", "1")
    res = subprocess.run([sys.executable, "-m", "distill_core", "reproduce", "papernot", "--quick", "--out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return res, out


@pytest.mark.slow
def test_papernot_quick_cli_writes_the_sweep_and_break_it(papernot):
    res, out = papernot
    assert res.returncode == 0, res.stderr[-3000:]
    assert "[papernot" in res.stderr and "T = 100 student" in res.stderr      # progress on stderr
    assert res.stdout.splitlines()[0].startswith("papernot: ") and "results.json" in res.stdout
    results = json.loads((out / "results.json").read_text())
    md = check_common(results, "papernot", out)
    print(f"papernot quick: {results['seconds']} s")

    assert [p["T"] for p in results["sweep"]] == [1, 20, 100]
    for p in results["sweep"] + [results["undistilled"]]:
        for key in ("test_accuracy", "jsma_softmax_success", "rho_adv", "confidence", "zero_grad_fraction"):
            assert fraction(p[key]), (key, p[key])
        assert p["test_accuracy"] > 0.3 and p["confidence"] >= 0.1
        hist = p["grad_hist"]
        assert len(hist["edges"]) == len(hist["counts"]) + 1 and hist["edges"] == sorted(hist["edges"])
        assert isinstance(hist["zeros"], int) and sum(hist["counts"]) + hist["zeros"] <= p["n_grad"]
        assert math.isclose(hist["zeros"] / p["n_grad"], p["zero_grad_fraction"])
    b = results["break_it"]
    assert b["T"] == 100 and isinstance(b["n"], int) and b["n"] > 0
    for key in ("jsma_softmax", "jsma_logits", "pgd_z_over_t", "cw_l2", "transfer_from_undistilled"):
        assert fraction(b[key]), (key, b[key])
    assert "| model | test accuracy | JSMA success (softmax)" in md and "| student, T = 100 |" in md
    assert "## Break it" in md and "| CW-L2 |" in md


# ---------------------------------------------------------------- bss and mtard, in process


@pytest.mark.slow
def test_bss_quick_rows_cover_fractions_and_methods(tmp_path):
    out = tmp_path / "bss"
    results = run_reproduction("bss", quick=True, out=out, log=lambda message: None)
    md = check_common(results, "bss", out)
    print(f"bss quick: {results['seconds']} s")
    assert {(r["fraction"], r["method"]) for r in results["rows"]} == {
        (f, m) for f in (0.1, 1.0) for m in ("standard", "kd", "bss")}
    for r in results["rows"]:
        assert r["seeds"] == [0]
        assert fraction(r["accuracy_mean"]) and r["accuracy_mean"] > 0.3 and r["accuracy_std"] >= 0
        assert fraction(r["mag_sim"]) and -1 <= r["ang_sim"] <= 1
    assert results["teacher"]["source"] == "trained here" and results["teacher"]["test_accuracy"] > 0.5
    assert "| training data | samples | epochs | method |" in md and "| BSS-KD |" in md


@pytest.mark.slow
def test_mtard_quick_table_has_every_method_and_consistent_columns(tmp_path):
    out = tmp_path / "mtard"
    results = run_reproduction("mtard", quick=True, out=out, log=lambda message: None)
    md = check_common(results, "mtard", out)
    print(f"mtard quick: {results['seconds']} s")
    assert [r["method"] for r in results["rows"]] == ["standard", "pgd_at", "trades", "kd", "ard", "rslad", "mtard",
                                                      "mtard_no_ebb", "mtard_no_nlb"]
    assert results["settings"]["clean_teacher"] == "mnist-5k/standard"
    for r in results["rows"] + results["teachers"]:
        assert all(fraction(r[k]) for k in ("clean", "fgsm", "pgd20", "cw_inf", "w_robust")), r
        # Robust accuracy counts only samples that are also classified correctly when clean.
        assert max(r["fgsm"], r["pgd20"], r["cw_inf"]) <= r["clean"]
        assert math.isclose(r["w_robust"], (r["clean"] + r["pgd20"]) / 2)
    assert "| method | clean | FGSM | PGD-20 | CW-inf | W-Robust |" in md and "| mtard_no_nlb |" in md


# ---------------------------------------------------------------- options, errors and verdicts (no training)


@pytest.mark.parametrize("args, message", [
    (["reproduce", "hinton"], "invalid choice"),
    (["reproduce", "papernot", "--quick"], "--quick needs --out"),
    (["reproduce", "papernot", "--train-teachers", "--out", "x"], "trains all its models"),
])
def test_cli_rejects_bad_options_in_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_options_default_to_the_shipped_folder_and_commands_rerun_them():
    assert check_options("mtard") == default_out("mtard") == ROOT / "assets" / "reproductions" / "mtard"
    assert check_options("bss", quick=True, out="tmp/b") == Path("tmp/b")
    assert cli_command("bss", True, "tmp/b", 3, True) == (
        "python -m distill_core reproduce bss --quick --out tmp/b --seed 3 --train-teachers")


def test_missing_zoo_teacher_says_how_to_get_it():
    with pytest.raises(ReproductionError, match="--train-teachers"):
        zoo_teacher("mnist-5k/no-such-model")


def test_mtard_verdict_does_not_call_zero_robustness_comparable():
    def row(method, clean, pgd):
        return {"method": method, "clean": clean, "fgsm": pgd, "pgd20": pgd, "cw_inf": pgd,
                "w_robust": (clean + pgd) / 2}

    names = ["standard", "pgd_at", "trades", "kd", "ard", "rslad", "mtard", "mtard_no_ebb", "mtard_no_nlb"]
    nobody_robust = mtard_module.expectations([row(n, 0.9 if n.startswith("mtard") else 0.5, 0.0) for n in names])
    assert nobody_robust[0]["shown"] and not nobody_robust[1]["shown"]
    assert "not robust here" in nobody_robust[1]["detail"]
    robust = mtard_module.expectations([row(n, 0.9, 0.0 if n == "standard" else 0.5) for n in names])
    assert not robust[0]["shown"] and robust[1]["shown"] and robust[4]["shown"]


def test_json_is_strict_and_tables_are_markdown():
    import numpy as np

    assert jsonable({"a": (np.float32(0.5), torch.tensor([1, 2])), "b": float("nan")}) == {"a": [0.5, [1, 2]],
                                                                                          "b": None}
    assert markdown_table(["x", "y"], [[1, "2 %"]]) == "| x | y |\n|---|---|\n| 1 | 2 % |"
