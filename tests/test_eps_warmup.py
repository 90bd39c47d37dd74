"""Adversarial training that trains: the eps warm-up of every adversarial method, and no collapse passes as a result."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill_core.data import load_dataset
from distill_core.methods import TrainState, build_method, get_method
from distill_core.models import build_model
from distill_core.train import CHANCE_MARGIN, TrainConfig, Trainer, collapse_message, did_not_learn

ADVERSARIAL = ("pgd_at", "trades", "ard", "rslad", "mtard")


@pytest.fixture(scope="module")
def mnist():
    train, info = load_dataset("mnist-5k", "train")
    test, _ = load_dataset("mnist-5k", "test")
    return train, test, info


def _method(name, info, **config):
    torch.manual_seed(0)
    teachers = {r: build_model("small-cnn", info) for r in get_method(name).teacher_roles}
    return build_method(name, build_model("small-cnn", info), config, teachers=teachers, info=info)


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_every_adversarial_method_warms_eps_up_linearly(name, mnist):
    _, _, info = mnist
    m = _method(name, info)
    assert get_method(name).Config().eps_warmup == 0.4          # the default that trains on MNIST-like data
    total = 100                                                  # ramp over the first 40 steps
    eps = [m.scheduled_eps(TrainState(step=k, total_steps=total)) for k in (0, 10, 20, 40, 41, 99)]
    assert eps == pytest.approx([0.0, 0.075, 0.15, 0.3, 0.3, 0.3])
    off = _method(name, info, eps_warmup=0.0)
    assert off.scheduled_eps(TrainState(step=0, total_steps=total)) == pytest.approx(0.3)


def test_the_attack_runs_with_the_scheduled_eps_and_its_step(mnist, monkeypatch):
    import importlib

    methods_pkg = importlib.import_module("distill_core.methods._base")
    calls = []
    monkeypatch.setattr(methods_pkg, "pgd", lambda model, x, y, **kw: calls.append(kw) or x.clone())
    train, _, info = mnist
    m = _method("pgd_at", info, steps=10)
    x, y = train.tensors[0][:8], train.tensors[1][:8]
    m.loss(x, y, TrainState(step=20, total_steps=100))
    assert calls[-1]["eps"] == pytest.approx(0.15) and calls[-1]["alpha"] == pytest.approx(2.5 * 0.15 / 10)
    assert m.schedule_logs() == {"eps": pytest.approx(0.15)}


def test_trainer_logs_eps_per_step(mnist):
    train, test, info = mnist
    small = torch.utils.data.TensorDataset(*(t[:256] for t in train.tensors))
    m = _method("pgd_at", info, steps=2, eps_warmup=0.5)
    events = list(Trainer(m, (small, None), TrainConfig(epochs=2, batch_size=64, seed=0)).run())
    eps = [e.data["eps"] for e in events if e.kind == "step"]
    assert len(eps) == 8 and eps[0] == 0.0 and eps == sorted(eps) and eps[-1] == pytest.approx(0.3)
    assert eps[2] == pytest.approx(0.15)                        # step 2 of a 4-step ramp
    from distill_core.plots.training import group_series
    from ui.jobs import job_series

    assert group_series(job_series(events)["steps"])["eps"] == ["eps"]   # the Train page charts it


def _pgd_at_one_epoch(mnist, warmup):
    train, test, info = mnist
    m = _method("pgd_at", info, steps=5, eps_warmup=warmup)
    events = list(Trainer(m, (train, test), TrainConfig(epochs=1, batch_size=64, seed=0)).run())
    return events[-1].data


def test_pgd_at_with_warmup_trains_where_full_eps_from_the_start_may_not(mnist):
    """METHODS.md section 7: at eps 0.3 from random weights, PGD-AT can stay at chance for a whole short run."""
    warm = _pgd_at_one_epoch(mnist, 0.5)
    print("1 epoch PGD-AT, warm-up over half of it:", warm["test_accuracy"])
    assert warm["learned"] and warm["test_accuracy"] >= 0.5 and "warning" not in warm
    cold = _pgd_at_one_epoch(mnist, 0.0)
    print("1 epoch PGD-AT, full eps from the first step:", cold["test_accuracy"], cold.get("warning"))
    assert cold["test_accuracy"] < warm["test_accuracy"]
    if not cold["learned"]:   # the collapse is reported with its cause
        assert "did not learn" in cold["warning"] and "eps_warmup" in cold["warning"]


class Constant(nn.Module):
    """A classifier that ignores its input: exactly chance on a balanced test set."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        return x.flatten(1)[:, :1] * 0 + self.bias


def test_a_run_at_chance_ends_with_did_not_learn(mnist):
    train, test, info = mnist
    small = torch.utils.data.TensorDataset(*(t[:128] for t in train.tensors))
    m = build_method("standard", Constant(), info=info)
    final = list(Trainer(m, (small, test), TrainConfig(epochs=1, batch_size=64, seed=0)).run())[-1]
    assert final.kind == "done"
    assert final.data["learned"] is False and final.data["chance_accuracy"] == pytest.approx(0.1)
    assert final.data["test_accuracy"] < 0.1 + CHANCE_MARGIN
    assert final.data["warning"].startswith("did not learn: test accuracy")
    assert "learning rate" in final.data["warning"]


def test_did_not_learn_threshold_and_messages(mnist):
    assert did_not_learn(0.10, 0.1) and did_not_learn(0.149, 0.1)
    assert not did_not_learn(0.15, 0.1) and not did_not_learn(0.9, 0.1) and not did_not_learn(None, 0.1)
    assert did_not_learn(0.52, 0.5) and not did_not_learn(0.9, 0.5)        # two classes: chance is 50 %
    _, _, info = mnist
    cold = collapse_message(_method("pgd_at", info, eps_warmup=0.0), 0.1, 0.1)
    assert "warm eps up" in cold
    warm = collapse_message(_method("trades", info), 0.1, 0.1)
    assert "inner attack" in warm


def test_cli_prints_the_collapse_as_its_last_line(tmp_path, monkeypatch, capsys):
    import distill_core.train as train_mod
    from distill_core.__main__ import main

    monkeypatch.setattr(train_mod, "did_not_learn", lambda acc, chance: True)   # force the verdict, not the run
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--method", "standard", "--epochs", "1",
                 "--quiet", "--runs-dir", str(tmp_path)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("warning: did not learn:")
