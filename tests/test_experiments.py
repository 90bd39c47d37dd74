"""The pages' small experiments: defensive-distillation specs, Break it, the sweep reader, BSS demos, trade-off rows."""

import json
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from distill_core.lab.tradeoff import evaluate_run_robustness, filter_rows, tradeoff_rows
from distill_core.papers.bss import bss_paths, bss_toward_each_class
from distill_core.papers.defensive import break_defensive, defensive_specs, sweep_baseline, sweep_rows
from distill_core.robustness import RobustnessReport
from distill_core.runs import Run, list_runs
from distill_core.spec import TrainSpec, prepare_training
from distill_core.train import TrainConfig
from ui.jobs import ReproductionRun


class Scaled(nn.Module):
    """A fixed linear classifier on 1x6x6 images whose logits are multiplied by ``scale``.

    ``scale`` = 1000 stands in for a student distilled at T = 1000 and deployed at T = 1: the
    same decisions, logits 1000 times larger, a softmax that saturates in float32.
    """

    def __init__(self, scale: float = 1.0, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(36, 4, generator=gen), requires_grad=False)
        self.scale = scale

    def forward(self, x):
        return self.scale * (x.flatten(1) - 0.5) @ self.w


def _images(n: int = 12, seed: int = 1):
    x = torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))
    return x


# ---------------------------------------------------------------- defensive_specs


def test_defensive_specs_carry_T_to_both_stages_and_chain_the_teacher():
    teacher, student = defensive_specs("mnist-5k", 50.0, epochs=2)
    assert (teacher.method, student.method) == ("standard", "defensive")
    assert teacher.method_config == student.method_config == {"T": 50.0}
    assert student.teachers == {"teacher": "@0"} and teacher.teachers == {}
    assert teacher.model == student.model == "papernot-cnn"
    assert teacher.train.epochs == student.train.epochs == 2
    assert defensive_specs("moons", 5)[0].model == "mlp"
    assert defensive_specs("mnist-5k", 5)[0].method_config != defensive_specs("mnist-5k", 20)[0].method_config


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_defensive_specs_refuse_a_non_positive_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        defensive_specs("moons", bad)


# ---------------------------------------------------------------- break_defensive


def test_break_defensive_shows_the_masking_on_a_saturated_model():
    hot, cool = Scaled(1000.0), Scaled(1.0)
    x = _images()
    y = hot(x).argmax(1)  # labels = the model's own decisions: every sample is "correct"
    calls = []
    res = break_defensive(hot, x, y, 1000.0, source=cool, n=12, jsma_gamma=0.5,
                          progress=lambda done, total, name: calls.append((done, total, name)))
    assert [c[0] for c in calls] == list(range(7)) and {c[1] for c in calls} == {6}
    assert calls[0][2].startswith("JSMA on the softmax") and calls[-1][2] == "the zero-gradient count"
    rate = {r["key"]: r["success"] for r in res["rows"]}
    assert set(rate) == {"jsma_softmax", "pgd_softmax", "jsma_logits", "pgd_zt", "cw_margin", "transfer"}
    assert res["n"] == 12 and res["T"] == 1000.0
    # The saturated softmax gives exactly zero gradients; the logits never do.
    assert res["zero_grad"] == {"softmax": 12, "logits": 0, "n": 12}
    assert rate["jsma_softmax"] == 0.0 < rate["jsma_logits"]
    assert rate["pgd_zt"] > rate["pgd_softmax"] and rate["cw_margin"] > rate["pgd_softmax"]
    # Same decision function: what fools the cool model fools the hot one.
    assert rate["transfer"] > 0.5


def test_break_defensive_leaves_a_plain_model_attackable_and_restores_the_rng():
    model = Scaled(1.0)
    x = _images()
    y = model(x).argmax(1)
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    res = break_defensive(model, x, y, 1.0, n=5, jsma_gamma=0.5)
    assert torch.equal(torch.rand(1), expected)
    rate = {r["key"]: r["success"] for r in res["rows"]}
    assert "transfer" not in rate and res["zero_grad"]["softmax"] == 0
    assert rate["jsma_softmax"] > 0 and rate["pgd_softmax"] > 0


def test_break_defensive_with_cw_l2_and_nothing_correct():
    model = Scaled(1.0)
    x = _images(4)
    y = model(x).argmax(1)
    res = break_defensive(model, x, y, 1.0, n=4, jsma_gamma=0.5, cw_l2_steps=10)
    assert any(r["key"] == "cw_l2" for r in res["rows"])
    with pytest.raises(ValueError, match="none of these samples"):
        break_defensive(model, x, (y + 1) % 4, 1.0, n=4)


# ---------------------------------------------------------------- the sweep reader


def _point(T, jsma):
    return {"T": T, "test_accuracy": 0.9, "jsma_softmax_success": jsma, "rho_adv": 0.02, "confidence": 0.99,
            "zero_grad_fraction": 0.5, "grad_hist": {"edges": [-2.0, -1.0, 0.0], "counts": [3, 4], "zeros": 1}}


def test_sweep_rows_reads_the_reproduction_and_other_shapes():
    results = {"undistilled": {k: v for k, v in _point(1, 0.9).items() if k != "T"},
               "sweep": [_point(100, 0.01), _point(1, 0.8), _point(20, 0.1)]}
    rows = sweep_rows(results)
    assert [r["T"] for r in rows] == [1.0, 20.0, 100.0]
    assert [r["jsma_success"] for r in rows] == [0.8, 0.1, 0.01]
    assert rows[0]["grad_hist"] == {"edges": [-2.0, -1.0, 0.0], "counts": [3, 4]}
    assert sweep_baseline(results)["T"] == 1.0 and sweep_baseline(results)["jsma_success"] == 0.9
    assert sweep_baseline({"sweep": []}) is None
    by_t = sweep_rows({"5": {"jsma_success": 0.3}, "2": {"jsma_success": 0.5, "grad_hist": {"bins": [0, 1]}}})
    assert [r["T"] for r in by_t] == [2.0, 5.0] and by_t[0]["grad_hist"]["edges"] == [0, 1]
    assert math.isnan(by_t[0]["rho_adv"])
    assert sweep_rows([_point(3, 0.4)])[0]["jsma_success"] == 0.4


def test_sweep_rows_without_temperatures_is_an_error():
    with pytest.raises(ValueError, match="temperature"):
        sweep_rows({"sweep": [{"jsma_success": 0.1}]})


def test_reproduction_run_reports_lines_results_and_errors(monkeypatch, tmp_path):
    import distill_core.reproduce as reproduce

    def fake(experiment, *, quick, out, seed, log):
        log("training")
        if experiment == "bad":
            raise RuntimeError("boom")
        return {"experiment": experiment, "quick": quick, "out": str(out)}

    monkeypatch.setattr(reproduce, "run_reproduction", fake)
    ok = ReproductionRun("papernot", tmp_path).start()
    bad = ReproductionRun("bad", tmp_path).start()
    deadline = time.time() + 10
    while (ok.status == "running" or bad.status == "running") and time.time() < deadline:
        time.sleep(0.05)
    assert ok.status == "done" and ok.results["quick"] is True and ok.lines[-1].endswith("training")
    assert bad.status == "error" and "boom" in bad.error and bad.results is None
    assert ok.elapsed_s() >= 0 and ok.ended is not None


# ---------------------------------------------------------------- BSS demos


class Halfplane(nn.Module):
    """Two classes split by the line x0 + x1 = 1 (logits +-4 (x0 + x1 - 1))."""

    def forward(self, x):
        s = 4 * (x[:, 0] + x[:, 1] - 1)
        return torch.stack([-s, s], 1)


def test_bss_paths_walk_towards_the_boundary_and_stop_after_crossing():
    x = torch.tensor([[0.2, 0.2], [0.9, 0.8], [0.45, 0.5]])
    # Small steps: each moves 0.02 * 8 sqrt(2) = 23 % of the way to the line, so no sample crosses it.
    res = bss_paths(Halfplane(), x, eta=0.02, max_steps=10)
    path = res["path"]
    assert path.shape == (11, 3, 2) and np.allclose(path[0], x.numpy())
    assert res["base"].tolist() == [0, 1, 0] and res["target"].tolist() == [1, 0, 1]
    dist = np.abs(path.sum(2) - 1)                        # distance to the line, times sqrt(2)
    assert (np.diff(dist, axis=0) < 0).all() and (dist[-1] < 0.1 * dist[0]).all()
    assert res["steps"].tolist() == [10, 10, 10] and (res["final_pred"] == res["base"]).all()
    # Steps of 113 % of the distance: every sample crosses in one step, then stops.
    big = bss_paths(Halfplane(), x, eta=0.1, max_steps=10)
    assert big["steps"].tolist() == [1, 1, 1] and (big["final_pred"] != big["base"]).all()
    assert np.allclose(big["path"][1:], big["path"][-1])
    with pytest.raises(ValueError, match="differ"):
        bss_paths(Halfplane(), x, torch.tensor([0, 0, 0]))


def test_bss_toward_each_class_covers_every_other_class():
    model = Scaled(1.0)
    x = _images(1)[0]
    res = bss_toward_each_class(model, x, eta=0.05)
    assert res["x_bss"].shape == (3, 1, 6, 6)
    assert sorted(res["targets"].tolist() + [res["base"]]) == [0, 1, 2, 3]
    assert res["l2"].shape == (3,) and (res["l2"] > 0).all()
    assert ((res["p_target"] >= 0) & (res["p_target"] <= 1)).all()
    assert res["x_bss"].min() >= 0 and res["x_bss"].max() <= 1


# ---------------------------------------------------------------- trade-off rows


def _record(robust: float, apparent: float, zero: float = 0.0) -> dict:
    return RobustnessReport(protocol="autoattack", attacks=["apgd-ce", "apgd-t"], clean_accuracy=0.9,
                            robust_accuracy=robust, apparent_robust_accuracy=apparent, per_attack={},
                            flags={"zero_gradients": zero}, n=100, eps=0.3, norm="Linf", seed=0, seconds=1.0).to_dict()


def test_tradeoff_rows_and_filters(tmp_path):
    zoo = [{"name": "mnist-5k/standard", "dataset": "mnist-5k", "method": "standard", "model": "papernot-cnn",
            "method_config": {"T": 100}, "metrics": {"test_accuracy": 0.95, "robust_accuracy": 0.0},
            "robustness": _record(0.0, 0.85, zero=0.8)},
           {"name": "mnist-5k/old", "dataset": "mnist-5k", "method": "kd", "model": "small-cnn",   # PGD-era manifest
            "metrics": {"test_accuracy": 0.9, "robust_accuracy": 0.6, "robust_attack": "PGD"}}]
    runs = [Run(tmp_path / "a", {"dataset": "moons", "method": "kd", "model": "mlp"},
                {"status": "done", "test_accuracy": 0.9, "robustness": _record(0.5, 0.55)}),
            Run(tmp_path / "b", {"dataset": "moons", "method": "standard", "model": "mlp"},
                {"status": "stopped", "test_accuracy": 0.8, "robustness": {"robust_accuracy": 0.7, "table": []}}),
            Run(tmp_path / "c", {"dataset": "moons"}, {"status": "running"}),
            Run(tmp_path / "d", broken=True, error="bad"),
            Run(tmp_path / "e", {"dataset": "moons", "method": "pgd_at", "model": "mlp"},
                {"status": "done", "test_accuracy": 0.5, "learned": False})]
    rows = tradeoff_rows(zoo, runs)
    assert [(r["name"], r["source"], r["robust"]) for r in rows] == [
        ("mnist-5k/standard", "zoo", 0.0), ("mnist-5k/old", "zoo", None), ("a", "runs", 0.5), ("b", "runs", None),
        ("e", "runs", None)]
    std, old, a, b, e = rows
    assert std["masked"] and std["gap_shown"] and std["apparent"] == 0.85 and "AutoAttack" in std["robust_attack"]
    assert old["robust_attack"] == "not evaluated" and b["robust_attack"] == "not evaluated"   # old records
    assert not a["masked"] and not a["gap_shown"] and a["learned"] and not e["learned"]
    assert a["path"] == str(tmp_path / "a") and std["T"] == 100.0 and a["T"] is None
    assert [r["name"] for r in filter_rows(rows, datasets=["moons"])] == ["a", "b", "e"]
    assert [r["name"] for r in filter_rows(rows, sources=["zoo"])] == ["mnist-5k/standard", "mnist-5k/old"]
    assert [r["name"] for r in filter_rows(rows, methods=["kd", "standard"], sources=["runs"])] == ["a", "b"]
    assert filter_rows(rows, datasets=[]) == []


def test_evaluate_run_robustness_writes_the_summary(runs_dir):
    spec = TrainSpec(dataset="moons", model="mlp", train=TrainConfig(epochs=1, max_steps=5, device="cpu"))
    trainer, writer = prepare_training(spec, runs_dir)
    for _ in trainer.run():
        pass
    [before] = tradeoff_rows([], list_runs(runs_dir))
    assert before["robust"] is None
    seen = []
    rep = evaluate_run_robustness(writer.path, "autoattack-fast", n=40, progress=lambda f, m: seen.append(f))
    assert 0.0 <= rep.robust_accuracy <= rep.clean_accuracy <= 1.0
    assert rep.n == 40 and rep.eps == 0.1 and "AutoAttack fast" in rep.label
    assert seen[-1] == 1.0 and seen == sorted(seen)
    summary = json.loads((writer.path / "summary.json").read_text())
    assert summary["robustness"] == {**rep.to_dict(), "seconds": summary["robustness"]["seconds"]}
    assert summary["status"] == "done"
    [after] = tradeoff_rows([], list_runs(runs_dir))
    assert after["robust"] == rep.robust_accuracy and after["apparent"] == rep.apparent_robust_accuracy
