"""The reproductions' pipeline: each quick run writes results.json in the agreed layout and results.md.

These check the pipeline (files, layout, values in range, tables, AutoAttack columns), not the
papers' numbers: the quick runs train for seconds on a few hundred samples. They run
single-threaded: their work is many tiny batches (JSMA iterations on a few images), where a
second intra-op thread gains little and, on a loaded machine, its synchronisation made them 10x
slower. The verdict logic (three states, the seeds' spread) is checked on rows built by hand.
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
from distill_core.papers.defensive import BREAK_ATTACKS, MASKED_ATTACKS, break_rates, defensive_specs
from distill_core.reproduce import ReproductionError, check_options, cli_command, default_out, run_reproduction
from distill_core.reproduce import bss as bss_module
from distill_core.reproduce import mtard as mtard_module
from distill_core.reproduce import papernot as papernot_module
from distill_core.reproduce._common import (
    DID_NOT_TRAIN,
    NOT_SHOWN,
    SHOWN,
    STATES,
    beyond_spread,
    expectation,
    expectations_markdown,
    jsonable,
    markdown_table,
    zoo_teacher,
)

ROOT = Path(__file__).resolve().parents[1]
TOP_KEYS = {"experiment", "quick", "settings", "seconds", "command", "expectations"}


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
        assert set(e) == {"claim", "shown", "status", "detail"}
        assert isinstance(e["claim"], str) and isinstance(e["shown"], bool) and isinstance(e["detail"], str)
        assert e["status"] in STATES and e["shown"] == (e["status"] == SHOWN)
    assert json.loads((out / "results.json").read_text()) == results
    md = (out / "results.md").read_text()
    assert md.startswith("# ") and results["command"] in md
    verdicts = [line for line in md.splitlines() if line.startswith(("- **shown**", "- **not shown**",
                                                                     "- **did not train**"))]
    assert [v.split("**")[1] for v in verdicts] == [e["status"] for e in results["expectations"]]
    return md


def check_robustness(record: dict, protocol: str, n: int, eps: float = 0.3) -> None:
    """A stored AutoAttack report (``RobustnessReport.to_dict``): what ran, on how many samples, in range."""
    assert record["protocol"] == protocol and record["n"] == n and record["eps"] == eps
    assert record["label"].startswith("AutoAttack") and f"n = {n}" in record["label"]
    assert record["library"].startswith("pyautoattack")
    assert fraction(record["robust_accuracy"]) and fraction(record["apparent_robust_accuracy"])
    # A sample counts as robust only if it is classified correctly when clean.
    assert max(record["robust_accuracy"], record["apparent_robust_accuracy"]) <= record["clean_accuracy"]
    assert list(record["per_attack"]) == record["attacks"]
    assert math.isclose(record["per_attack"][record["attacks"][-1]], record["robust_accuracy"])


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
    n_robust = results["settings"]["n_robust"]
    assert results["settings"]["protocol"] == "autoattack" and n_robust == papernot_module.QUICK["n_robust"]
    assert results["robustness_protocol"]["label"] == results["undistilled"]["robustness"]["label"]
    for p in results["sweep"] + [results["undistilled"]]:
        for key in ("test_accuracy", "jsma_softmax_success", "rho_adv", "confidence", "zero_grad_fraction"):
            assert fraction(p[key]), (key, p[key])
        assert p["test_accuracy"] > 0.3 and p["confidence"] >= 0.1
        assert p["trained"] is (p["test_accuracy"] >= results["chance_accuracy"] + 0.05)
        check_robustness(p["robustness"], "autoattack", n_robust)
        assert p["robust_accuracy"] == p["robustness"]["robust_accuracy"]
        assert p["apparent_robust_accuracy"] == p["robustness"]["apparent_robust_accuracy"]
        assert p["masked"] is p["robustness"]["masked"]
        hist = p["grad_hist"]
        assert len(hist["edges"]) == len(hist["counts"]) + 1 and hist["edges"] == sorted(hist["edges"])
        assert isinstance(hist["zeros"], int) and sum(hist["counts"]) + hist["zeros"] <= p["n_grad"]
        assert math.isclose(hist["zeros"] / p["n_grad"], p["zero_grad_fraction"])
    hot, base = results["sweep"][-1], results["undistilled"]
    # Break it: the page's protocol, every attack of its one label map, in its order, with the page's labels.
    b = results["break_it"]
    assert b["T"] == 100 and isinstance(b["n"], int) and b["n"] == len(b["indices"]) > 0
    assert [r["key"] for r in b["rows"]] == list(BREAK_ATTACKS)
    assert [r["attack"] for r in b["rows"]] == list(BREAK_ATTACKS.values())
    assert all(fraction(r["success"]) for r in b["rows"]), b["rows"]
    assert b["zero_grad"]["n"] == b["n"] and 0 <= b["zero_grad"]["softmax"] <= b["n"]
    # JSMA on the logits against the undistilled model: measured once, in the break-it row (its reference).
    assert b["settings"]["cw_l2"] is not None and fraction(b["rows"][2]["source_success"])
    assert "jsma_logits_success" not in base and papernot_module.jsma_logits_reference(b, base) == \
        b["rows"][2]["source_success"]
    assert "| model | test accuracy | JSMA success (softmax)" in md and "| student, T = 100 |" in md
    assert "| robust (AutoAttack) | apparent (PGD-CE) | masked | trained |" in md
    assert "## Break it" in md and "| attack | success | detail |" in md
    assert all(f"| {label}" in md for label in BREAK_ATTACKS.values())
    # One claim per attack that gets through, judged on the break-it result's own rates.
    rates = break_rates(b)
    for key in BREAK_ATTACKS:
        claims = [e for e in results["expectations"] if e["claim"].startswith(f"{BREAK_ATTACKS[key]} brings")]
        assert len(claims) == (key not in MASKED_ATTACKS)
        if claims and hot["trained"] and base["trained"]:
            assert claims[0]["shown"] == (rates[key] >= papernot_module.BROKEN - 1e-6)
    # The two Carlini & Wagner claims on AutoAttack, judged on the numbers of this run.
    by_claim = {e["claim"].split(":")[0]: e for e in results["expectations"]}
    not_robust = by_claim["Defensive distillation does not make the model robust"]
    masking = next(e for e in results["expectations"] if "apparent (PGD-CE)" in e["claim"])
    if hot["trained"] and base["trained"]:
        assert not_robust["shown"] == (hot["robust_accuracy"] <= base["robust_accuracy"] + 0.05)
        assert masking["shown"] == (hot["apparent_robust_accuracy"] - hot["robust_accuracy"] > 0.10)


# ---------------------------------------------------------------- bss and mtard, in process


@pytest.mark.slow
def test_bss_quick_rows_cover_fractions_and_methods(tmp_path):
    out = tmp_path / "bss"
    results = run_reproduction("bss", quick=True, out=out, log=lambda message: None)
    md = check_common(results, "bss", out)
    print(f"bss quick: {results['seconds']} s")
    assert {(r["fraction"], r["method"]) for r in results["rows"]} == {
        (f, m) for f in (0.1, 1.0) for m in ("standard", "kd", "bss")}
    n_robust = bss_module.QUICK["n_robust"]
    for r in results["rows"]:
        assert r["seeds"] == [0]
        assert fraction(r["accuracy_mean"]) and r["accuracy_mean"] > 0.3 and r["accuracy_std"] >= 0
        assert fraction(r["mag_sim"]) and -1 <= r["ang_sim"] <= 1
        assert len(r["robustness"]) == len(r["robust_accuracies"]) == 1 and r["robust_accuracy_std"] >= 0
        check_robustness(r["robustness"][0], "autoattack", n_robust)
        assert r["robust_accuracy_mean"] == r["robustness"][0]["robust_accuracy"]
        assert r["trained"] is (r["untrained_seeds"] == [])
    assert results["teacher"]["source"] == "trained here" and results["teacher"]["test_accuracy"] > 0.5
    assert results["teacher"]["trained"] and results["robustness_protocol"]["n"] == n_robust
    assert "| training data | samples | epochs | method |" in md and "| BSS-KD |" in md
    assert "| robust (AutoAttack) | trained |" in md


@pytest.mark.slow
def test_mtard_quick_table_has_every_method_and_consistent_columns(tmp_path):
    out = tmp_path / "mtard"
    results = run_reproduction("mtard", quick=True, out=out, log=lambda message: None)
    md = check_common(results, "mtard", out)
    print(f"mtard quick: {results['seconds']} s")
    assert [r["method"] for r in results["rows"]] == ["standard", "pgd_at", "trades", "kd", "ard", "rslad", "mtard",
                                                      "mtard_no_ebb", "mtard_no_nlb"]
    s = results["settings"]
    assert s["clean_teacher"] == "mnist-5k/standard"
    assert s["seeds"] == results["seeds"] == list(mtard_module.QUICK["seeds"]) and len(s["seeds"]) >= 2
    protocol, n_aa = s["protocol"], s["n_autoattack"]
    assert results["autoattack"]["protocol"] == protocol and results["autoattack"]["n"] == n_aa

    def check_model(r):
        assert all(fraction(r[k]) for k in ("clean", "fgsm", "pgd20", "cw_inf", "autoattack", "w_robust")), r
        # Robust accuracy counts only samples that are also classified correctly when clean.
        assert max(r["fgsm"], r["pgd20"], r["cw_inf"]) <= r["clean"]
        assert r["autoattack"] <= r["autoattack_clean"]
        assert math.isclose(r["w_robust"], (r["clean"] + r["autoattack"]) / 2)
        assert r["trained"] is (r["clean"] >= results["chance_accuracy"] + 0.05)
        check_robustness(r["robustness"], protocol, n_aa)
        assert r["autoattack"] == r["robustness"]["robust_accuracy"]

    assert [t["method"] for t in results["teachers"]] == ["clean teacher", "robust teacher"]   # once, not per seed
    for t in results["teachers"]:
        check_model(t)
    for r in results["rows"]:
        assert [p["seed"] for p in r["per_seed"]] == r["seeds"] == s["seeds"]
        for p in r["per_seed"]:
            check_model(p)
        for k in ("clean", "fgsm", "pgd20", "cw_inf", "autoattack", "w_robust"):
            values = [p[k] for p in r["per_seed"]]
            assert math.isclose(r[k], sum(values) / len(values))
            assert math.isclose(r["std"][k], float(torch.tensor(values, dtype=torch.float64).std()), abs_tol=1e-12)
        assert r["untrained_seeds"] == [p["seed"] for p in r["per_seed"] if not p["trained"]]
    # Every seed starts from its own initial weights: the standard students of two seeds differ.
    assert len({p["clean"] for r in results["rows"] for p in r["per_seed"]}) > 1
    assert len(results["expectations"]) == 6
    assert "| method | clean | FGSM | PGD-20 | CW-inf | AutoAttack | W-Robust | trained |" in md
    assert "| mtard_no_nlb |" in md and " ± " in md and results["spread_rule"] in md


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


MTARD_ROWS = list(mtard_module.STUDENTS)
JITTER = (0.0, 0.01, -0.01)      # three seeds, a small spread (std 1 point)


def mtard_rows(clean: dict | float, autoattack: dict | float, jitter=JITTER) -> list[dict]:
    """Rows as mtard.run returns them (only what the verdict reads), one value per seed from a centre +- jitter;
    ``clean`` / ``autoattack``: one centre for every method, or {method: centre} over a default under key None."""
    def centre(values, name):
        return values.get(name, values[None]) if isinstance(values, dict) else values

    rows = []
    for name in MTARD_ROWS:
        c, a = centre(clean, name), centre(autoattack, name)
        per_seed = [{"seed": i, "clean": c + j, "autoattack": max(0.0, a + j)} for i, j in enumerate(jitter)]
        for p in per_seed:
            p["w_robust"] = (p["clean"] + p["autoattack"]) / 2
        rows.append({"method": name, "per_seed": per_seed})
    return rows


def verdict(expectations: list[dict], start: str) -> dict:
    return next(e for e in expectations if e["claim"].startswith(start))


def test_mtard_verdict_does_not_call_zero_robustness_comparable():
    nobody_robust = mtard_module.expectations(mtard_rows({None: 0.5, "mtard": 0.9, "mtard_no_ebb": 0.9,
                                                          "mtard_no_nlb": 0.9}, 0.0))
    assert nobody_robust[0]["status"] == SHOWN and nobody_robust[1]["status"] == NOT_SHOWN
    assert "not robust here" in nobody_robust[1]["detail"]
    robust = mtard_module.expectations(mtard_rows(0.9, {None: 0.5, "standard": 0.0}))
    assert [e["status"] for e in robust] == [NOT_SHOWN, SHOWN, NOT_SHOWN, NOT_SHOWN, NOT_SHOWN, SHOWN]


def break_result(rates: dict[str, float], n: int = 4) -> dict:
    """A ``break_defensive`` result with these success rates (only what the verdict and the tables read)."""
    rows = [{"key": k, "attack": BREAK_ATTACKS[k], "success": v, "n": n, "masked": k in MASKED_ATTACKS, "detail": ""}
            for k, v in rates.items()]
    return {"T": 100.0, "n": n, "rows": rows, "zero_grad": {"softmax": n, "logits": 0, "n": n}}


def test_papernot_trains_and_breaks_through_the_papers_pipeline(monkeypatch):
    """reproduce papernot = defensive_specs(shared_init=True) run by train_defensive, then break_defensive."""
    s = papernot_module.settings(quick=True)
    calls, models = [], iter(range(100))

    def fake_train(specs, data, info, *, trained=None, on_event=None, require_done=False):
        calls.append((specs, dict(trained or {})))
        assert data[1] is None and require_done and info.name == s.dataset
        given = trained or {}
        return [given[i] if i in given else f"model {next(models)}" for i in range(len(specs))], "done"

    point = {"test_accuracy": 0.9, "trained": True, "jsma_softmax_success": 0.5, "rho_adv": 0.1, "confidence": 0.9,
             "zero_grad_fraction": 0.5, "robust_accuracy": 0.0, "apparent_robust_accuracy": 0.5, "masked": True,
             "robustness": {"label": "AutoAttack", "flags": {"zero_gradients": 0.5}, "protocol": "autoattack",
                            "library": "x", "eps": 0.3, "norm": "Linf", "n": 1, "seed": 0},
             "n_jsma": 3, "n_rho": 1, "rho_unbroken": 0}
    broken = break_result(dict.fromkeys(BREAK_ATTACKS, 1.0))
    seen = {}

    def fake_break(model, x, y, T, **kwargs):
        seen.update(model=model, T=T, **kwargs)
        return {**broken, "settings": {"jsma": {"theta": 1.0, "gamma": 0.145}}}

    monkeypatch.setattr(papernot_module, "train_defensive", fake_train)
    monkeypatch.setattr(papernot_module, "break_defensive", fake_break)
    monkeypatch.setattr(papernot_module, "measure", lambda *args, **kwargs: dict(point))
    monkeypatch.setattr(papernot_module, "targeted_success_rate", lambda *args, **kwargs: type("R", (), {"rate": 0.5}))
    results = papernot_module.run(s, log=lambda message: None)

    config = papernot_module.train_config(s.epochs, s.seed, s.batch_size, s.lr)

    def specs(T):
        return defensive_specs(s.dataset, T, shared_init=True, model=s.model, train=config, fraction=s.train_fraction)

    (first, none), *per_T = calls
    assert first == specs(1.0)[:2] and none == {}                  # the initial model and the undistilled (T = 1) one
    assert [c[0] for c in per_T] == [specs(float(T)) for T in s.temperatures]
    init, undistilled = "model 0", "model 1"
    assert [c[1] for c in per_T] == [{0: init, 1: undistilled} if T == 1 else {0: init} for T in s.temperatures]
    assert seen["T"] == s.temperatures[-1] and seen["model"] == f"model {len(s.temperatures) * 2}"
    assert (seen["source"], seen["n"], seen["cw_l2"]) == (undistilled, s.n_break, True)
    assert results["break_it"]["rows"] == broken["rows"]
    claimed = [e["claim"].split(" brings")[0] for e in results["expectations"] if " brings" in e["claim"]]
    assert claimed == [v for k, v in BREAK_ATTACKS.items() if k not in MASKED_ATTACKS]


def test_papernot_break_claims_read_the_break_it_rates():
    base = {"T": 1.0, "test_accuracy": 0.95, "trained": True, "jsma_softmax_success": 0.9, "rho_adv": 0.02,
            "confidence": 0.9, "zero_grad_fraction": 0.0, "robust_accuracy": 0.0, "apparent_robust_accuracy": 0.0,
            "masked": False, "robustness": {"label": "AutoAttack", "flags": {"zero_gradients": 0.0}}, "n_jsma": 3,
            "jsma_logits_success": 0.5}
    hot = {**base, "T": 100.0, "jsma_softmax_success": 0.0, "zero_grad_fraction": 1.0, "apparent_robust_accuracy": 0.9,
           "rho_adv": 1.0, "confidence": 1.0, "rho_unbroken": 1, "n_rho": 1}
    rates = {"jsma_softmax": 0.0, "pgd_softmax": 0.0, "jsma_logits": 0.5, "pgd_z_over_t": 1.0, "cw_margin": 0.95,
             "cw_l2": 1.0, "transfer": 0.2}
    claims = {e["claim"].split(" brings")[0]: e for e in
              papernot_module.expectations(base, [hot], break_result(rates), chance=0.1) if " brings" in e["claim"]}
    assert {k: claims[BREAK_ATTACKS[k]]["status"] for k in rates if k not in MASKED_ATTACKS} == {
        "jsma_logits": NOT_SHOWN, "pgd_z_over_t": SHOWN, "cw_margin": SHOWN, "cw_l2": SHOWN, "transfer": NOT_SHOWN}
    assert "against the undistilled model it succeeds 50.0 %" in claims[BREAK_ATTACKS["jsma_logits"]]["detail"]
    del rates["cw_l2"]                                          # an attack that did not run makes no claim
    assert BREAK_ATTACKS["cw_l2"] not in {e["claim"].split(" brings")[0] for e in papernot_module.expectations(
        base, [hot], break_result(rates), chance=0.1)}


def test_a_chance_level_model_makes_its_claims_did_not_train():
    # PGD-AT "robust" at 10 % clean: a collapsed model answering one class, not a defence.
    collapsed = mtard_module.expectations(mtard_rows({None: 0.9, "pgd_at": 0.1}, {None: 0.5, "standard": 0.0}))
    adv = verdict(collapsed, "Adversarial training buys robustness")
    assert adv["status"] == DID_NOT_TRAIN and not adv["shown"]
    assert "PGD-AT (seed 0) at 10.0 % clean (chance 10 %)" in adv["detail"]
    assert verdict(collapsed, "MTARD has the best W-Robust")["status"] == DID_NOT_TRAIN    # PGD-AT is compared
    assert verdict(collapsed, "Entropy-Based Balance")["status"] == NOT_SHOWN             # it does not rest on PGD-AT
    # One collapsed seed is enough; the same rows with PGD-AT trained show the claim.
    one_seed_down = mtard_rows({None: 0.9}, {None: 0.5, "standard": 0.0})
    one_seed_down[1]["per_seed"][2]["clean"] = 0.12
    assert verdict(mtard_module.expectations(one_seed_down), "Adversarial")["status"] == DID_NOT_TRAIN
    trained = mtard_module.expectations(mtard_rows({None: 0.9}, {None: 0.5, "standard": 0.0}))
    assert verdict(trained, "Adversarial training buys robustness")["status"] == SHOWN
    # Papernot: a T = 100 student at chance cannot show "not robust" nor the masking gap.
    point = {"T": 100.0, "test_accuracy": 0.11, "trained": False, "jsma_softmax_success": 0.0, "rho_adv": 1.0,
             "confidence": 1.0, "zero_grad_fraction": 1.0, "robust_accuracy": 0.0, "apparent_robust_accuracy": 0.9,
             "masked": True, "robustness": {"label": "AutoAttack", "flags": {"zero_gradients": 1.0}},
             "rho_unbroken": 0, "n_rho": 1}
    base = {**point, "T": 1.0, "test_accuracy": 0.95, "trained": True, "jsma_softmax_success": 0.9, "rho_adv": 0.02,
            "confidence": 0.9, "zero_grad_fraction": 0.0, "apparent_robust_accuracy": 0.0, "n_jsma": 3}
    broken = break_result({"jsma_softmax": 0.0, "pgd_softmax": 0.0, "jsma_logits": 1.0, "pgd_z_over_t": 1.0,
                           "cw_margin": 1.0, "cw_l2": 1.0, "transfer": 1.0})
    papernot = papernot_module.expectations(base, [point], broken, chance=0.1)
    assert papernot[0]["status"] == SHOWN                                   # rests on the undistilled model only
    assert all(e["status"] == DID_NOT_TRAIN for e in papernot[1:]), [e["status"] for e in papernot]
    assert all(not e["shown"] for e in papernot[1:])
    trained_hot = papernot_module.expectations(base, [{**point, "test_accuracy": 0.9, "trained": True}], broken,
                                               chance=0.1)
    assert verdict(trained_hot, "Defensive distillation does not make the model robust")["status"] == SHOWN
    assert verdict(trained_hot, "... but looks robust to a naive attack")["status"] == SHOWN
    # BSS: a collapsed BSS seed at 10 % of the data.
    s = bss_module.settings(quick=True)
    rows = [{"fraction": f, "method": m, "seeds": [0], "accuracy_mean": a, "accuracy_std": 0.0, "accuracies": [a],
             "mag_sim": 0.5, "ang_sim": 0.5} for f in s.fractions for m in bss_module.METHODS
            for a in [0.1 if (f, m) == (0.1, "bss") else 0.8]]
    states = [e["status"] for e in bss_module.expectations(rows, s, {"test_accuracy": 0.9, "trained": True}, 0.1)]
    assert states == [DID_NOT_TRAIN, SHOWN, DID_NOT_TRAIN, DID_NOT_TRAIN]


def test_a_difference_inside_the_seeds_spread_is_not_shown():
    assert beyond_spread([0.80, 0.80, 0.81], [0.75, 0.75, 0.76])           # 5 points apart, spread 1.2 points
    assert not beyond_spread([0.70, 0.80, 0.90], [0.65, 0.75, 0.85])       # 5 points apart, spread 20 points
    assert not beyond_spread([0.9], [0.1])                                  # one seed: no spread, nothing shown
    assert beyond_spread([0.50, 0.52], [0.50, 0.51], margin=-0.05) and not beyond_spread([0.5, 0.52], [0.5, 0.51])

    def ebb(mtard, without):
        rows = mtard_rows(0.9, 0.5)
        for name, values in (("mtard", mtard), ("mtard_no_ebb", without)):
            rows[MTARD_ROWS.index(name)]["per_seed"] = [{"seed": i, "clean": 0.9, "autoattack": v,
                                                         "w_robust": (0.9 + v) / 2} for i, v in enumerate(values)]
        return verdict(mtard_module.expectations(rows), "Entropy-Based Balance")

    assert ebb([0.60, 0.61, 0.62], [0.50, 0.51, 0.52])["status"] == SHOWN
    inside = ebb([0.40, 0.60, 0.80], [0.35, 0.55, 0.75])                    # higher mean, far inside the spread
    assert inside["status"] == NOT_SHOWN and "MTARD 75.0 ± 10.0 %" in inside["detail"]
    assert ebb([0.6], [0.5])["status"] == NOT_SHOWN                          # one seed
    assert "no spread" in ebb([0.6], [0.5])["detail"]


def test_verdicts_render_three_states():
    shown = expectation("a", True, "1 vs 2")
    dead = expectation("b", True, "1 vs 2", ["PGD-AT at 10.0 % clean (chance 10 %)"])
    assert (shown["status"], shown["shown"], dead["status"], dead["shown"]) == (SHOWN, True, DID_NOT_TRAIN, False)
    md = expectations_markdown([shown, expectation("c", False, "x"), dead,
                                {"claim": "old", "shown": False, "detail": "before status existed"}])
    assert md.splitlines() == ["- **shown**: a — 1 vs 2", "- **not shown**: c — x",
                               "- **did not train**: b — PGD-AT at 10.0 % clean (chance 10 %): no evidence either way. "
                               "Measured: 1 vs 2", "- **not shown**: old — before status existed"]


def test_json_is_strict_and_tables_are_markdown():
    import numpy as np

    assert jsonable({"a": (np.float32(0.5), torch.tensor([1, 2])), "b": float("nan")}) == {"a": [0.5, [1, 2]],
                                                                                          "b": None}
    assert markdown_table(["x", "y"], [[1, "2 %"]]) == "| x | y |\n|---|---|\n| 1 | 2 % |"
