"""Curves over T: closed forms, the chain rule against autograd, and EBB against bisection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from distill_core.evaluate import input_jacobian
from distill_core.lab.temperature import (
    ebb_simulation,
    entropy_curve,
    softmax_jacobian,
    softmax_jacobian_norms,
    temperature_grid,
    temperatures_for_entropies,
)


def tiny_model(scale: float = 1.0) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 5))
    with torch.no_grad():
        model[3].weight.mul_(scale)
        model[3].bias.mul_(scale)
    return model.eval()


def test_grid() -> None:
    Ts = temperature_grid()
    assert len(Ts) == 61 and Ts[0] == pytest.approx(0.1) and Ts[-1] == pytest.approx(100)
    for T in (1, 10):
        assert np.isclose(Ts, T).any()
    with pytest.raises(ValueError):
        temperature_grid(0, 1)


def test_entropy_curve_rises_from_zero_to_log_c() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0, -2.0], [0.5, 0.4, 0.0, 2.0]])
    H = entropy_curve(logits, temperature_grid(1e-3, 1e4, 40))
    assert np.all(np.diff(H) >= -1e-12)
    assert H[0] < 1e-6 and H[-1] == pytest.approx(math.log(4), abs=1e-3)
    assert entropy_curve(logits[0], [1.0]).shape == (1,)


@pytest.mark.parametrize("T", [0.5, 1.0, 7.0])
def test_softmax_jacobian_matches_autograd(T: float) -> None:
    model, x = tiny_model(), torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    z = model(x)[0].detach()
    jz = input_jacobian(model, x, wrt="logits")[0]
    expected = input_jacobian(model, x, wrt="softmax", temperature=T)[0]
    torch.testing.assert_close(softmax_jacobian(z, jz, T), expected, rtol=1e-5, atol=1e-7)


def test_norms_fall_like_one_over_t_and_shift_with_the_logit_scale() -> None:
    model, x = tiny_model(), torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    z, jz = model(x)[0].detach(), input_jacobian(model, x, wrt="logits")[0]
    far = softmax_jacobian_norms(z, jz, [1e3, 1e4])["norm"]
    assert far[0] / far[1] == pytest.approx(10, rel=1e-2)
    # a model with 20x larger logits (a student distilled at T = 20) has the same curve at 20x the T
    Ts = np.array([0.5, 1.0, 3.0])
    base = softmax_jacobian_norms(z, jz, Ts)["norm"]
    scaled = softmax_jacobian_norms(20 * z, 20 * jz, 20 * Ts)["norm"]
    np.testing.assert_allclose(scaled, base, rtol=1e-6)


def test_saturated_softmax_is_exactly_zero_in_float32_only() -> None:
    z = torch.tensor([200.0, 0.0, -10.0])
    jz = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    out = softmax_jacobian_norms(z, jz, [1.0, 100.0])
    assert out["zero_float32"].tolist() == [True, False]
    assert 0 < out["norm"][0] < 1e-80 and out["norm"][1] > 1e-3


def test_ebb_settles_where_bisection_says() -> None:
    gen = torch.Generator().manual_seed(0)
    logits_nat = 8 * torch.randn(64, 10, generator=gen)     # sharp, low entropy: gets softened
    logits_adv = 1 * torch.randn(64, 10, generator=gen)     # soft, high entropy: sharpened, clamped at 1
    sim = ebb_simulation(logits_nat, logits_adv, lr_tau=0.05, steps=400)
    assert sim["step"][-1] == 400 and len(sim["tau_nat"]) == 401
    assert sim["tau_adv"].max() <= 1.05 + 1e-9           # pinned at the clamp, one step of wobble
    target = sim["H_adv"][sim["tau_adv"] == 1.0][-1]
    expected = temperatures_for_entropies(logits_nat, [target])[0]
    assert abs(sim["tau_nat"][-1] - expected) <= 2 * 0.05 + 1e-9
    assert abs(sim["H_nat"][-1] - sim["H_adv"][-1]) < 0.05
    assert (sim["tau_nat"] >= 1).all() and (sim["tau_nat"] <= 10).all()


def test_vectorised_matching_reaches_each_target_entropy() -> None:
    logits = 3 * torch.randn(32, 10, generator=torch.Generator().manual_seed(3))
    targets = [0.0, 0.3, 1.0, 2.0, 2.3026]
    got = temperatures_for_entropies(logits, targets)
    for t, h in zip(got[1:-1], targets[1:-1]):
        assert entropy_curve(logits, [t])[0] == pytest.approx(h, abs=1e-6)
    assert got[0] == pytest.approx(1e-2) and got[-1] == pytest.approx(1e3)


def test_batched_temperatures_and_numpy_entropy_agree_with_the_scalar_forms() -> None:
    model, x = tiny_model(), torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    z, jz = model(x)[0].detach(), input_jacobian(model, x, wrt="logits")[0]
    Ts = torch.tensor([0.3, 1.0, 5.0])
    batched = softmax_jacobian(z, jz, Ts)
    assert batched.shape == (3, *jz.shape)
    for k, T in enumerate(Ts.tolist()):
        torch.testing.assert_close(batched[k], softmax_jacobian(z, jz, T))
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(5))
    sim = ebb_simulation(logits, 2 * logits, steps=0)
    assert sim["H_nat"][0] == pytest.approx(entropy_curve(logits, [1.0])[0], rel=1e-12)
    assert sim["H_adv"][0] == pytest.approx(entropy_curve(2 * logits, [1.0])[0], rel=1e-12)
