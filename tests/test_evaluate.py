"""Tests for distill_core.evaluate: accuracy, robustness, JSMA protocol, Jacobians, MagSim / AngSim."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill_core import evaluate
from distill_core._torch import eval_mode, logits_of, predict
from distill_core.attacks import fgsm, jsma
from distill_core.data import load_dataset
from distill_core.evaluate import (
    accuracy,
    accuracy_under_attack,
    ang_sim,
    attack_table,
    boundary_similarity,
    gradient_amplitude_stats,
    input_jacobian,
    log10_histogram,
    mag_sim,
    mean_confidence,
    rho_adv,
    targeted_success_rate,
    w_robust,
)
from distill_core.models import build_model


def _train(model_name: str, dataset: str, epochs: int, lr: float, seed: int = 0):
    """A seeded tiny model trained with Adam (batch 64), its test set and the dataset info."""
    torch.manual_seed(seed)
    train, info = load_dataset(dataset, "train")
    x_te, y_te = load_dataset(dataset, "test")[0].tensors
    model = build_model(model_name, info)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = train.tensors
    for _ in range(epochs):
        for b in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return model.eval(), x_te, y_te, info


@pytest.fixture(scope="module")
def moons_mlp():
    return _train("mlp", "moons", epochs=15, lr=1e-2)


@pytest.fixture(scope="module")
def digits_cnn():
    return _train("small-cnn", "digits", epochs=5, lr=5e-3)


@pytest.fixture(scope="module")
def digits_cnn_noisy(digits_cnn):
    """A second model with nearby but different boundaries: the trained CNN with seeded weight noise."""
    model = copy.deepcopy(digits_cnn[0])
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * p.std() * torch.randn(p.shape, generator=gen))
    return model


class Scaled(nn.Module):
    """``model(x) * factor``: the logits of a model trained at temperature ``factor`` and deployed at 1."""

    def __init__(self, model: nn.Module, factor: float):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.factor


# ---------------------------------------------------------------- accuracy and confidence


def test_accuracy_equals_a_manual_count(digits_cnn):
    model, x, y, _ = digits_cnn
    with torch.no_grad():
        expected = int((model(x).argmax(1) == y).sum()) / len(x)
    assert accuracy(model, (x, y), batch_size=7) == pytest.approx(expected)
    assert accuracy(model, torch.utils.data.TensorDataset(x, y)) == pytest.approx(expected)
    assert 0.85 < expected <= 1.0, "the fixture should be a trained model"
    assert predict(model, x, batch_size=13).shape == (len(x),)
    assert logits_of(model, x[:5]).shape == (5, 10)
    with pytest.raises(TypeError):
        accuracy(model, x)


def test_eval_mode_is_used_and_each_modules_mode_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.9), nn.Linear(16, 3), nn.BatchNorm1d(3))
    model[3].eval()  # a frozen BatchNorm inside a model in train mode
    x = torch.rand(32, 4)
    with torch.no_grad(), eval_mode(model):
        expected = model(x).argmax(1)
    assert model.training and model[1].training and not model[3].training
    for _ in range(3):  # dropout at 0.9 would make train-mode predictions vary
        assert torch.equal(predict(model, x), expected)
    assert model.training and model[1].training and not model[3].training


def test_mean_confidence_on_a_hand_made_model():
    table = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 0.0]])  # logits of samples 0, 1, 2
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(table.T)
    x, y = torch.eye(3), torch.tensor([0, 1, 2])  # sample 2 is misclassified and must be ignored
    e = math.e
    assert mean_confidence(model, x, y) == pytest.approx((e**2 / (e**2 + 2) + e / (e + 2)) / 2, rel=1e-6)
    assert mean_confidence(model, x, y, T=2.0) == pytest.approx((e / (e + 2) + e**0.5 / (e**0.5 + 2)) / 2, rel=1e-6)
    assert math.isnan(mean_confidence(model, x, torch.tensor([1, 0, 1])))


def test_w_robust():
    assert w_robust(0.8, 0.4) == pytest.approx(0.6)


# ---------------------------------------------------------------- Jacobians and gradient masking


def _autograd_jacobian(model: nn.Module, x: torch.Tensor, wrt: str, temperature: float) -> torch.Tensor:
    """The reference: one backward pass per class on the whole batch (samples are independent in eval mode)."""
    xg = x.clone().requires_grad_(True)
    z = model(xg) / temperature
    out = torch.softmax(z, 1) if wrt == "softmax" else z
    rows = [torch.autograd.grad(out[:, c].sum(), xg, retain_graph=True)[0] for c in range(out.shape[1])]
    return torch.stack(rows, 1)


@pytest.mark.parametrize("wrt", ["logits", "softmax"])
@pytest.mark.parametrize("which", ["moons_mlp", "digits_cnn"])
def test_jacobian_equals_a_per_class_autograd_loop(request, which, wrt):
    model, x, _, _ = request.getfixturevalue(which)
    x = x[:12]
    for temperature, chunk in [(1.0, None), (3.0, 5)]:
        jac = input_jacobian(model, x, wrt=wrt, temperature=temperature, chunk_size=chunk)
        assert jac.shape == (12, model(x[:1]).shape[1], *x.shape[1:]) and not jac.requires_grad
        expected = _autograd_jacobian(model, x, wrt, temperature)
        # Forward mode (2-D inputs) rounds differently from a backward pass: compare at float32 scale.
        torch.testing.assert_close(jac, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_jacobian_uses_batchnorm_running_statistics(digits_cnn):
    _, x, _, info = digits_cnn
    torch.manual_seed(0)
    model = build_model("resnet8", info)
    model.train()(torch.rand(64, *info.input_shape))  # move the running statistics away from (0, 1)
    model.train()
    jac = input_jacobian(model, x[:3], wrt="logits")
    assert model.training
    model.eval()
    torch.testing.assert_close(jac, _autograd_jacobian(model, x[:3], "logits", 1.0), rtol=1e-4, atol=1e-6)


def test_saturated_softmax_has_exactly_zero_gradients(moons_mlp):
    model, x_test, y_test, _ = moons_mlp
    hot = Scaled(model, 1000.0)  # deployed at T = 1 after training at T = 1000
    # The test set plus a dense segment across the boundary, where even x1000 logits do not saturate.
    a, b = x_test[y_test == 0][0], x_test[y_test == 1][0]
    x = torch.cat([x_test, a + torch.linspace(0, 1, 500)[:, None] * (b - a)])
    with torch.no_grad():
        probs = torch.softmax(hot(x), 1)
    saturated = probs.min(1).values == 0  # the other class's probability underflowed to exactly 0
    unsaturated = probs.min(1).values > 1e-20
    assert saturated.sum() > 0.5 * len(x) and unsaturated.sum() > 0

    soft = gradient_amplitude_stats(hot, x, wrt="softmax", batch_size=300)
    zero = soft["amplitude"] == 0
    assert soft["n"] == len(x) and soft["amplitude"].shape == (len(x),)
    assert zero[saturated.numpy()].all(), "every saturated sample must have an exactly zero Jacobian"
    assert soft["n_zero"] == int(zero.sum()) >= int(saturated.sum())
    assert soft["fraction_zero"] == pytest.approx(soft["n_zero"] / len(x))
    assert (soft["amplitude"][unsaturated.numpy()] > 0).all(), "samples near the boundary keep a gradient"

    logits = gradient_amplitude_stats(hot, x, wrt="logits")
    assert logits["n_zero"] == 0 and (logits["amplitude"] > 0).all()
    # Carlini & Wagner's fix: attack softmax(Z / T) with the training temperature.
    assert gradient_amplitude_stats(hot, x, wrt="softmax", temperature=1000.0)["n_zero"] == 0


def test_log10_histogram_counts_zeros_apart():
    values = np.array([0.0, 0.0, 1e-35, 1e-3, 1e-3, 1.0, 0.0])
    h = log10_histogram(values, bins=7, range=(-35.0, 0.0))
    assert h["n_zero"] == 3 and h["n"] == 7
    assert h["counts"].sum() == 4 and h["counts"].shape == (7,)
    np.testing.assert_allclose(h["edges"], np.linspace(-35, 0, 8))
    assert h["counts"][0] == 1 and h["counts"][-1] == 3
    assert log10_histogram(torch.zeros(4))["n_zero"] == 4
    with pytest.raises(ValueError):
        log10_histogram([-1.0, 1.0])


# ---------------------------------------------------------------- MagSim / AngSim


def test_mag_sim_and_ang_sim_closed_forms():
    torch.manual_seed(0)
    v = torch.randn(5, 1, 4, 4)
    assert mag_sim(v, v) == pytest.approx(1.0) and ang_sim(v, v) == pytest.approx(1.0)
    assert mag_sim(v, -v) == pytest.approx(1.0) and ang_sim(v, -v) == pytest.approx(-1.0)
    assert mag_sim(v, 2 * v) == pytest.approx(0.5) and ang_sim(v, 2 * v) == pytest.approx(1.0)
    assert mag_sim(3 * v, v) == pytest.approx(1 / 3)
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert ang_sim(e0, e1) == pytest.approx(0.0) and mag_sim(e0, e1) == pytest.approx(0.5)
    # The mean over pairs: one identical pair, one opposite pair.
    pairs_t, pairs_s = torch.stack([e0, e0]), torch.stack([e0, -e0])
    assert ang_sim(pairs_t, pairs_s) == pytest.approx(0.0)
    zero = torch.zeros(2)
    assert mag_sim(zero, zero) == 1.0 and ang_sim(zero, e0) == 0.0 and mag_sim(zero, e0) == 0.0
    with pytest.raises(ValueError):
        mag_sim(torch.zeros(2, 3), torch.zeros(3, 2))


def test_boundary_similarity_of_a_model_with_itself_is_one(digits_cnn):
    model, x, y, _ = digits_cnn
    res = boundary_similarity(model, model, x[:8], "all", y=y[:8])
    assert res["n_pairs"] == 9 * res["n_samples"] and res["n_samples"] >= 6
    assert res["mag_sim"] == pytest.approx(1.0) and res["ang_sim"] == pytest.approx(1.0)


def test_boundary_similarity_between_two_models(digits_cnn, digits_cnn_noisy):
    teacher, x, y, _ = digits_cnn
    student = digits_cnn_noisy
    res = boundary_similarity(teacher, student, x[:16], "all", y=y[:16], batch_size=40)
    assert 0.0 < res["mag_sim"] < 1.0 and -1.0 <= res["ang_sim"] < 1.0
    assert res["mag"].shape == res["ang"].shape == (res["n_pairs"],)
    np.testing.assert_allclose(res["mag_sim"], res["mag"].mean())
    sampled = boundary_similarity(teacher, student, x[:16], "sampled", seed=3)
    assert sampled["n_pairs"] == sampled["n_samples"]
    given = boundary_similarity(teacher, student, x[:16], torch.zeros(16, dtype=torch.long))
    base = predict(teacher, x[:16])
    agree = base == predict(student, x[:16])
    assert given["n_pairs"] == int((agree & (base != 0)).sum())
    with pytest.raises(ValueError):
        boundary_similarity(teacher, student, x[:4], "nearest")


# ---------------------------------------------------------------- robust accuracy and the robustness table


def test_robust_accuracy_counts_misclassified_samples_as_failures(moons_mlp):
    model, x, y, info = moons_mlp
    clean = accuracy(model, (x, y))
    assert clean < 1.0, "moons with noise has a few misclassified test points"
    assert accuracy_under_attack(model, x, y, lambda m, xb, yb: xb) == pytest.approx(clean)
    # An "attack" that moves every sample onto a correctly classified point of its own class: the
    # attacked accuracy is 100 %, but the samples misclassified clean are still failures.
    pred = predict(model, x)
    anchors = {int(c): x[(pred == y) & (y == c)][0] for c in y.unique()}
    healer = lambda m, xb, yb: torch.stack([anchors[int(c)] for c in yb])
    assert accuracy_under_attack(model, x, y, healer, batch_size=33) == pytest.approx(clean)
    assert accuracy_under_attack(model, x, y, "fgsm", eps=0.0) == pytest.approx(clean)
    assert accuracy_under_attack(model, x, y, fgsm, eps=0.0) == pytest.approx(clean)
    strong = accuracy_under_attack(model, x, y, "pgd", info=info, eps=0.2, alpha=0.02, steps=20)
    assert strong < clean - 0.2


def test_robust_accuracy_under_jsma_tries_every_target(digits_cnn):
    model, x, y, info = digits_cnn
    x, y = x[:12], y[:12]
    clean = accuracy(model, (x, y))
    all_targets = accuracy_under_attack(model, x, y, "jsma", info=info)
    one_target = accuracy_under_attack(model, x, y, "jsma", info=info, target=(y + 1) % 10)
    assert 0.0 <= all_targets <= one_target <= clean


def test_robustness_table_rows_are_json(digits_cnn):
    model, x, y, info = digits_cnn
    rows = attack_table(model, (x, y), ["fgsm", "pgd", "jsma"], n=12, info=info,
                            settings={"pgd": {"steps": 5}})
    assert json.loads(json.dumps(rows)) == rows
    assert [r["attack"] for r in rows] == ["clean", "fgsm", "pgd", "jsma"]
    clean = rows[0]["accuracy"]
    assert all(r["n"] == 12 for r in rows)
    assert all(0.0 <= r["accuracy"] <= clean for r in rows[1:])
    assert rows[1]["settings"] == {"eps": 0.3}
    assert rows[2]["settings"]["steps"] == 5 and rows[2]["settings"]["eps"] == 0.3
    assert rows[3]["settings"]["target"] == "every other class"
    assert rows[2]["w_robust"] == pytest.approx((clean + rows[2]["accuracy"]) / 2)
    again = attack_table(model, (x, y), ["pgd"], n=12, info=info, settings={"pgd": {"steps": 5}})
    assert again[1]["accuracy"] == rows[2]["accuracy"], "seeded subset and random starts"


# ---------------------------------------------------------------- Papernot et al.'s JSMA measurements


def test_targeted_success_rate_protocol(digits_cnn):
    model, x, y, _ = digits_cnn
    y = y.clone()
    y[:3] = (y[:3] + 1) % 10  # mislabel the first three: they must be skipped
    res = targeted_success_rate(model, x, y, "jsma", n_samples=10, theta=1.0, gamma=0.145)
    assert res.success.shape == res.targets.shape == res.fraction_changed.shape == (10, 9)
    assert 0.0 < res.rate <= 1.0 and res.rate == pytest.approx(res.success.mean())
    idx = torch.as_tensor(res.indices)
    correct = (predict(model, x) == y).nonzero().flatten()
    assert torch.equal(idx, correct[:10]), "the first N correctly classified samples, in order"
    y_sel = y[idx].numpy()[:, None]
    assert (res.targets != y_sel).all() and (np.sort(res.targets, 1) == np.sort(
        (y_sel + np.arange(1, 10)) % 10, 1)).all()
    assert res.fraction_changed.max() <= 2 * math.floor(64 * 0.145 / 2) / 64
    # One cell by hand.
    i, j = 3, 4
    x_adv = jsma(model, x[idx[i : i + 1]], y[idx[i : i + 1]], target=torch.tensor([res.targets[i, j]]),
                 theta=1.0, gamma=0.145)
    assert bool(predict(model, x_adv)[0] == res.targets[i, j]) == res.success[i, j]


def test_targeted_success_rate_with_a_callable(digits_cnn):
    model, x, y, _ = digits_cnn
    noop = targeted_success_rate(model, x, y, lambda m, xb, yb, target: xb, n_samples=5)
    assert noop.rate == 0.0 and noop.success.shape == (5, 9) and (noop.fraction_changed == 0).all()


def test_rho_adv(digits_cnn, monkeypatch):
    model, x, y, _ = digits_cnn
    calls = []
    real_run_attack = evaluate.run_attack

    def recording_run_attack(name, *args, **kwargs):
        calls.append((name, kwargs))
        return real_run_attack(name, *args, **kwargs)

    monkeypatch.setattr(evaluate, "run_attack", recording_run_attack)
    res = rho_adv(model, x, y, n_samples=4)
    assert {c[0] for c in calls} == {"jsma"} and len(calls) == 9, "one JSMA pass per target"
    assert all(kw["gamma"] == 1.0 and kw["theta"] == 1.0 for _, kw in calls), "rho_adv is uncapped"
    assert 0.0 < res["rho_adv"] <= 1.0 and res["n"] == 4
    assert res["per_sample"].shape == res["easiest_target"].shape == (4,)
    assert res["rho_adv"] == pytest.approx(res["per_sample"].mean())
    np.testing.assert_allclose(res["per_sample"] * 64, np.round(res["per_sample"] * 64), atol=1e-9)
    idx = torch.as_tensor(res["indices"])
    broken = res["easiest_target"] >= 0
    assert res["n_unbroken"] == int((~broken).sum())
    assert (res["easiest_target"][broken] != y[idx].numpy()[broken]).all()
    # Each sample's fraction is reached: JSMA towards its easiest target succeeds with that many changes.
    i = int(np.flatnonzero(broken)[0])
    x_adv = jsma(model, x[idx[i : i + 1]], y[idx[i : i + 1]], target=torch.tensor([res["easiest_target"][i]]),
                 theta=1.0, gamma=1.0)
    assert int(predict(model, x_adv)[0]) == res["easiest_target"][i]
    assert (x_adv != x[idx[i : i + 1]]).float().mean().item() == pytest.approx(res["per_sample"][i])
