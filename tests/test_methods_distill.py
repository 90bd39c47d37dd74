"""The distillation methods (kd, defensive, bss, ard, rslad, mtard): closed forms, MTARD's balance
and live controls, BSS's schedules and sample selection, and short runs through the Trainer."""

from __future__ import annotations

import copy
import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill_core.data import load_dataset
from distill_core.losses import entropy, kd_loss, softmax_t
from distill_core.methods import Controls, TrainState, build_method
from distill_core.methods.bss import bss_alpha, bss_beta, select_base_samples
from distill_core.models import build_model
from distill_core.train import TrainConfig, Trainer

DISTILL_METHODS = ("kd", "defensive", "bss", "ard", "rslad", "mtard")
ROLES = {"kd": ("teacher",), "defensive": ("teacher",), "bss": ("teacher",), "ard": ("teacher",),
         "rslad": ("teacher",), "mtard": ("clean_teacher", "robust_teacher")}
FAST = {"ard": {"steps": 3}, "rslad": {"steps": 3}, "mtard": {"steps": 3}}   # short inner attacks
EXPECTED_LOGS = {
    "kd": {"ce", "kd"},
    "defensive": {"ce_soft"},
    "bss": {"ce", "kd", "kd_bss", "alpha", "beta", "n_bss"},
    "ard": {"kd_adv", "ce"},
    "rslad": {"kl_adv", "kl_nat"},
    "mtard": {"loss_nat", "loss_adv", "tau_nat", "tau_adv", "w_nat", "w_adv", "H_nat", "H_adv",
              "user_tau_nat", "user_tau_adv", "user_w_nat", "user_w_adv"},
}


@pytest.fixture(scope="module")
def moons():
    train, info = load_dataset("moons", "train")
    test, _ = load_dataset("moons", "test")
    return train, test, info


def mlp(info, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", info, hidden=(32, 32))


def make(name: str, info, student: nn.Module | None = None, **config):
    """Method ``name`` on a fresh mlp student with fresh mlp teachers (distinct seeds)."""
    teachers = {role: mlp(info, 10 + i) for i, role in enumerate(ROLES[name])}
    student = student if student is not None else mlp(info, 0)
    return build_method(name, student, {**FAST.get(name, {}), **config}, teachers=teachers, info=info)


def batch(data, n: int = 64):
    x, y = data.tensors
    return x[:n], y[:n]


# ---------------------------------------------------------------- every method


@pytest.mark.parametrize("name", DISTILL_METHODS)
def test_loss_is_finite_and_trains_the_student_only(name, moons):
    train, _, info = moons
    method = make(name, info)
    method.model.train()
    x, y = batch(train)
    loss, logs = method.loss(x, y, TrainState())
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert EXPECTED_LOGS[name] <= set(logs)
    assert all(math.isfinite(float(v)) for v in logs.values())
    loss.backward()
    grads = [p.grad for p in method.model.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    for teacher in method.teachers.values():
        assert not teacher.training
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert method.model.training   # the inner attacks restore the student's mode


@pytest.mark.parametrize("name", ["ard", "rslad", "mtard"])
def test_inner_attack_runs_with_the_student_in_eval_mode(name, moons):
    train, _, info = moons
    method = make(name, info)
    modes: list[bool] = []
    method.model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    method.model.train()
    x, y = batch(train)
    method.loss(x, y, TrainState())
    steps = FAST[name]["steps"]
    assert modes[:steps] == [False] * steps          # PGD's forwards
    assert modes[steps:] and all(modes[steps:])      # the loss's forwards


@pytest.mark.parametrize(("name", "start"), [("ard", True), ("rslad", "normal"), ("mtard", "normal")])
def test_inner_attack_settings(name, start, moons, monkeypatch):
    methods_pkg = importlib.import_module("distill_core.methods._base")
    calls = []

    def spy(model, x, y, **kwargs):
        calls.append(kwargs)
        return x.clone()

    monkeypatch.setattr(methods_pkg, "pgd", spy)   # the shared Method.student_pgd calls it
    train, _, info = moons
    make(name, info).loss(*batch(train), TrainState(step=1, total_steps=1))   # past the eps warm-up
    (kwargs,) = calls
    assert kwargs.get("random_start", True) == start      # uniform (ARD) or x + 0.001 N(0, 1)
    assert kwargs["eps"] == info.default_eps and kwargs["steps"] == 3
    assert kwargs["alpha"] == pytest.approx(2.5 * info.default_eps / 3)


@pytest.mark.parametrize("name", DISTILL_METHODS)
def test_each_method_trains_through_the_trainer(name, moons):
    train, test, info = moons
    method = make(name, info)
    config = TrainConfig(epochs=1, batch_size=64, max_steps=3, device="cpu", eval_samples=64)
    events = list(Trainer(method, (train, test), config).run())
    steps = [e for e in events if e.kind == "step"]
    assert events[-1].kind == "done", events[-1].data
    assert len(steps) == 3
    for e in steps:
        assert EXPECTED_LOGS[name] <= set(e.data)
        assert math.isfinite(e.data["loss"])


# ---------------------------------------------------------------- closed forms per method


def test_kd_closed_form(moons):
    train, _, info = moons
    x, y = batch(train)
    teacher = mlp(info, 1)
    method = build_method("kd", copy.deepcopy(teacher), {"T": 4.0, "a": 0.9}, teachers={"teacher": teacher})
    loss, logs = method.loss(x, y, TrainState())     # student == teacher: no soft term
    assert float(logs["kd"]) == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(0.1 * F.cross_entropy(teacher(x), y).item(), rel=1e-5)
    student = mlp(info, 2)
    method = build_method("kd", student, {"T": 4.0, "a": 0.9}, teachers={"teacher": teacher})
    loss, _ = method.loss(x, y, TrainState())
    expected = 0.1 * F.cross_entropy(student(x), y) + 0.9 * 16 * F.kl_div(
        F.log_softmax(student(x) / 4, 1), F.softmax(teacher(x) / 4, 1), reduction="batchmean")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_defensive_loss_on_its_own_teacher_is_the_soft_label_entropy(moons):
    train, _, info = moons
    x, y = batch(train)
    teacher = mlp(info, 1)
    method = build_method("defensive", copy.deepcopy(teacher), {"T": 20.0}, teachers={"teacher": teacher})
    loss, _ = method.loss(x, y, TrainState())
    assert loss.item() == pytest.approx(entropy(softmax_t(teacher(x), 20.0)).mean().item(), rel=1e-5)


def test_ard_without_budget_is_kd_on_clean_inputs(moons):
    train, _, info = moons
    x, y = batch(train)
    method = make("ard", info, eps=0.0, a=0.5)
    student, teacher = method.model, method.teachers["teacher"]
    loss, logs = method.loss(x, y, TrainState())
    kd = kd_loss(student(x), teacher(x), 30.0)
    assert float(logs["kd_adv"]) == pytest.approx(kd.item(), rel=1e-5)
    assert loss.item() == pytest.approx(0.5 * kd.item() + 0.5 * F.cross_entropy(student(x), y).item(), rel=1e-5)


def test_rslad_attack_raises_the_kl_to_the_teacher(moons):
    train, _, info = moons
    x, y = batch(train)
    teacher = mlp(info, 1)
    method = build_method("rslad", copy.deepcopy(teacher), {"eps": 0.1, "steps": 5}, teachers={"teacher": teacher},
                          info=info)
    loss, logs = method.loss(x, y, TrainState(step=1, total_steps=1))   # past the eps warm-up
    assert float(logs["kl_nat"]) == pytest.approx(0.0, abs=1e-6)      # the student is the teacher
    assert float(logs["kl_adv"]) > 1e-4
    assert loss.item() == pytest.approx(5 / 6 * float(logs["kl_adv"]), rel=1e-5)


# ---------------------------------------------------------------- BSS


def test_bss_schedules():
    E = 80
    assert (bss_alpha(0, E), bss_beta(0, E)) == (4.0, 2.0)
    assert bss_alpha(0.75 * E, E) == pytest.approx(1.75) and bss_beta(0.75 * E, E) == pytest.approx(0.0, abs=1e-12)
    assert (bss_alpha(E, E), bss_beta(E, E)) == (1.0, 0.0)
    assert bss_alpha(40, E) == pytest.approx(2.5) and bss_beta(45, E) == pytest.approx(0.5)


def test_bss_on_epoch_start_sets_the_schedule(moons):
    method = make("bss", moons[2])
    assert (method.alpha, method.beta) == (4.0, 2.0)
    method.on_epoch_start(TrainState(epoch=6, epochs=8))
    assert (method.alpha, method.beta) == (pytest.approx(1.75), 0.0)


def test_bss_selection_keeps_both_correct_and_most_disagreeing():
    y = torch.tensor([0, 0, 0, 0, 0, 1])
    probs_t = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.2, 0.2], [0.8, 0.1, 0.1], [0.2, 0.8, 0.0],
                            [0.9, 0.05, 0.05], [0.1, 0.9, 0.0]])
    probs_s = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.5, 0.0], [0.4, 0.3, 0.3], [0.9, 0.1, 0.0],
                            [0.3, 0.7, 0.0], [0.2, 0.8, 0.0]])
    # Sample 3: teacher wrong; sample 4: student wrong. Disagreement off the true class:
    # s0 0, s1 0.09 + 0.04 = 0.13, s2 0.04 + 0.04 = 0.08, s5 0.01.
    assert select_base_samples(probs_t, probs_s, y, 2).tolist() == [1, 2]
    assert sorted(select_base_samples(probs_t, probs_s, y, 10).tolist()) == [0, 1, 2, 5]
    assert select_base_samples(probs_t, probs_s, y, 3).tolist() == [1, 2, 5]


def test_bss_crafts_at_most_the_scaled_attack_size(moons):
    train, _, info = moons
    teacher = mlp(info, 1)
    method = build_method("bss", copy.deepcopy(teacher), teachers={"teacher": teacher}, info=info)
    x, y = batch(train, 128)
    y = teacher(x).argmax(1)     # every sample correct for both: selection is limited by the size alone
    _, logs = method.loss(x, y, TrainState())
    assert logs["n_bss"] == 32 and float(logs["kd_bss"]) > 0       # 64 per 256 -> 32 per 128
    method.on_epoch_start(TrainState(epoch=3, epochs=4))             # beta = 0: nothing crafted
    _, logs = method.loss(x, y, TrainState())
    assert logs["n_bss"] == 0 and float(logs["kd_bss"]) == 0.0


# ---------------------------------------------------------------- MTARD


def run_steps(method, data, n: int, state: TrainState) -> list[dict]:
    """n optimiser steps of ``method`` on consecutive batches; the step logs as floats."""
    opt = torch.optim.SGD(method.model.parameters(), lr=0.05)
    x_all, y_all = data.tensors
    logs_seen = []
    for i in range(n):
        x, y = x_all[32 * i: 32 * (i + 1)], y_all[32 * i: 32 * (i + 1)]
        loss, logs = method.loss(x, y, state)
        opt.zero_grad()
        loss.backward()
        opt.step()
        state.step += 1
        logs_seen.append({k: float(v) for k, v in logs.items()})
    return logs_seen


def test_mtard_ablation_keeps_temperatures_and_weights_fixed(moons):
    train, _, info = moons
    method = make("mtard", info, ebb=False, nlb=False, tau_nat=2.0, tau_adv=3.0, w_nat=0.3, w_adv=0.7)
    for logs in run_steps(method, train, 4, TrainState()):
        assert (logs["tau_nat"], logs["tau_adv"], logs["w_nat"], logs["w_adv"]) == (2.0, 3.0, 0.3, 0.7)
    assert method.state_dict()["tau_nat"] == 2.0 and method.state_dict()["w_adv"] == 0.7


def test_mtard_balances_by_entropy_and_loss(moons):
    train, _, info = moons
    method = make("mtard", info, tau_nat=2.0, tau_adv=2.0, lr_tau=0.01)
    logs = run_steps(method, train, 4, TrainState())
    for before, after in zip(logs, logs[1:]):
        # EBB: the higher-entropy teacher's temperature falls by lr_tau, the other's rises.
        sign = 1.0 if before["H_adv"] > before["H_nat"] else -1.0
        assert after["tau_adv"] == pytest.approx(before["tau_adv"] - 0.01 * sign)
        assert after["tau_nat"] == pytest.approx(before["tau_nat"] + 0.01 * sign)
    # NLB: the first batch fixes L(0), so step 0 keeps 0.5 / 0.5; afterwards the weights move.
    assert (logs[0]["w_nat"], logs[0]["w_adv"]) == (0.5, 0.5)
    state = method.state_dict()
    assert state["loss0_nat"] == pytest.approx(logs[0]["loss_nat"]) and state["loss0_adv"] == logs[0]["loss_adv"]
    assert all(log["w_nat"] + log["w_adv"] == pytest.approx(1.0) for log in logs)
    assert logs[-1]["w_nat"] != 0.5


def test_mtard_balance_rates_shrink_with_lr_decays(moons):
    train, _, info = moons
    method = make("mtard", info, tau_nat=2.0, tau_adv=2.0)
    logs = run_steps(method, train, 2, TrainState(lr_decays=1))
    assert abs(logs[1]["tau_nat"] - logs[0]["tau_nat"]) == pytest.approx(1e-4)


def test_mtard_honours_controls_and_resumes_after_clear(moons):
    train, _, info = moons
    method = make("mtard", info, tau_nat=2.0, tau_adv=2.0, lr_tau=0.01)
    state = TrainState(controls=Controls())
    run_steps(method, train, 1, state)
    state.controls.set("tau_nat", 5.0)
    state.controls.set("w_nat", 0.8)
    logs = run_steps(method, train, 2, state)
    for log in logs:         # overridden at the next step and held there
        assert (log["tau_nat"], log["w_nat"], log["w_adv"]) == (5.0, 0.8, pytest.approx(0.2))
        assert (log["user_tau_nat"], log["user_w_nat"], log["user_w_adv"], log["user_tau_adv"]) == (1, 1, 1, 0)
    assert logs[1]["tau_adv"] != logs[0]["tau_adv"]          # EBB still moves the other temperature
    assert method.state_dict()["user"] == ["tau_nat", "w_adv", "w_nat"]

    state.controls.clear()
    logs = run_steps(method, train, 2, state)
    assert logs[0]["tau_nat"] == 5.0 and logs[0]["user_tau_nat"] == 0      # resumes from the user's value
    assert abs(logs[1]["tau_nat"] - 5.0) == pytest.approx(0.01)
    assert logs[0]["w_nat"] != 0.8 and abs(logs[0]["w_nat"] - 0.8) < 0.025  # one NLB step from 0.8

    state.controls.set("w_adv", 0.9)            # one weight set: the other is 1 - it
    (log,) = run_steps(method, train, 1, state)
    assert (log["w_adv"], log["w_nat"]) == (0.9, pytest.approx(0.1))
