"""Closed forms and properties of distill_core.losses (softmax_T, entropy, KD) and MTARD's EBB and NLB rules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from distill_core.lab.temperature import temperatures_for_entropies
from distill_core.losses import entropy, kd_loss, log_softmax_t, soft_cross_entropy, softmax_t
from distill_core.methods.mtard import entropy_balance, normalization_loss_balance

ENTROPY = st.floats(0.0, 5.0, allow_nan=False)
TAU = st.floats(1.0, 10.0, allow_nan=False)


def test_softmax_t_divides_logits_by_T():
    z = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.allclose(softmax_t(z, 2.0), F.softmax(z / 2.0, 1))
    assert torch.allclose(log_softmax_t(z, 2.0), torch.log(softmax_t(z, 2.0)))
    assert torch.allclose(softmax_t(z, 1e6), torch.full((1, 3), 1 / 3), atol=1e-5)   # T -> inf: uniform
    assert softmax_t(z, 0.01).argmax().item() == 2 and softmax_t(z, 0.01).max() > 0.999


def test_log_softmax_t_is_stable_where_softmax_underflows():
    z = torch.tensor([[0.0, 1000.0]])
    assert torch.isfinite(log_softmax_t(z, 1.0)).all()
    assert log_softmax_t(z, 1.0)[0, 0].item() == pytest.approx(-1000.0)


def test_entropy_closed_forms_and_zero_probabilities():
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]],
                         requires_grad=True)
    h = entropy(probs)
    assert torch.allclose(h, torch.tensor([math.log(4), 0.0, math.log(2)]))
    h.sum().backward()
    assert torch.isfinite(probs.grad).all()


def test_kd_loss_matches_hand_computed_value():
    # At T = 2 the teacher (0, 2 ln 3) gives (1/4, 3/4), the student (0, 0) gives (1/2, 1/2).
    T = 2.0
    teacher = torch.tensor([[0.0, 2 * math.log(3)], [0.0, 0.0]])
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    per_sample = kd_loss(student, teacher, T, reduction="none")
    assert per_sample.tolist() == pytest.approx([T**2 * kl, 0.0], abs=1e-6)
    assert kd_loss(student, teacher, T).item() == pytest.approx(T**2 * kl / 2, abs=1e-6)
    assert kd_loss(student, teacher, T, t_squared=False).item() == pytest.approx(kl / 2, abs=1e-6)
    assert kd_loss(student, teacher, T, reduction="sum").item() == pytest.approx(T**2 * kl, abs=1e-6)
    assert kd_loss(student, teacher, T, reduction="mean").item() == pytest.approx(T**2 * kl / 4, abs=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        kd_loss(student, teacher, T, reduction="avg")


def test_kd_loss_agrees_with_torch_kl_div_and_vanishes_on_equal_logits():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g)
    T = 4.0
    ref = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T**2
    assert kd_loss(s, t, T).item() == pytest.approx(ref.item(), rel=1e-5)
    assert kd_loss(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_cross_entropy_is_kl_plus_teacher_entropy():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    T = 3.0
    expected = kd_loss(s, t, T, t_squared=False) + entropy(softmax_t(t, T)).mean()
    assert soft_cross_entropy(s, t, T).item() == pytest.approx(expected.item(), rel=1e-5)


@settings(max_examples=200, deadline=None)
@given(tau_nat=TAU, tau_adv=TAU, h_nat=ENTROPY, h_adv=ENTROPY, lr=st.floats(1e-4, 2.0))
def test_ebb_sharpens_the_higher_entropy_teacher_and_stays_in_range(tau_nat, tau_adv, h_nat, h_adv, lr):
    new_nat, new_adv = entropy_balance(tau_nat, tau_adv, h_nat, h_adv, lr)
    assert 1.0 <= new_nat <= 10.0 and 1.0 <= new_adv <= 10.0
    if h_adv > h_nat:       # robust teacher too soft: sharpen it (tau down), soften the clean one (tau up)
        assert new_adv == pytest.approx(max(tau_adv - lr, 1.0))
        assert new_nat == pytest.approx(min(tau_nat + lr, 10.0))
    elif h_nat > h_adv:
        assert new_nat == pytest.approx(max(tau_nat - lr, 1.0))
        assert new_adv == pytest.approx(min(tau_adv + lr, 10.0))
    else:
        assert (new_nat, new_adv) == (tau_nat, tau_adv)


def test_ebb_clamps_at_both_ends():
    assert entropy_balance(10.0, 1.0, 0.1, 2.0, 0.5) == (10.0, 1.0)
    assert entropy_balance(1.0, 10.0, 2.0, 0.1, 0.5) == (1.0, 10.0)


def test_ebb_iterated_on_two_teachers_matches_their_entropies():
    g = torch.Generator().manual_seed(0)
    sharp, soft = 6 * torch.randn(32, 10, generator=g), torch.randn(32, 10, generator=g)
    tau_nat = tau_adv = 1.0

    def gap(tn: float, ta: float) -> float:
        return abs(float(entropy(softmax_t(sharp, tn)).mean() - entropy(softmax_t(soft, ta)).mean()))

    start = gap(tau_nat, tau_adv)
    for _ in range(600):
        h_nat = entropy(softmax_t(sharp, tau_nat)).mean()
        h_adv = entropy(softmax_t(soft, tau_adv)).mean()
        tau_nat, tau_adv = entropy_balance(tau_nat, tau_adv, h_nat, h_adv, 0.02)
    assert tau_nat > 2.0 and tau_adv <= 1.02 + 1e-9   # the sharp teacher was softened; the other sits at the floor
    assert gap(tau_nat, tau_adv) < 0.02 * start
    # EBB lands where the bisection says the sharp teacher's temperature should be.
    target = float(entropy(softmax_t(soft, 1.0)).mean())
    assert tau_nat == pytest.approx(temperatures_for_entropies(sharp, [target])[0], abs=0.03)


WEIGHT = st.floats(0.0, 1.0, allow_nan=False)
LOSS = st.floats(1e-3, 10.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(w_nat=WEIGHT, l_nat=LOSS, l_adv=LOSS, l0_nat=LOSS, l0_adv=LOSS, r_w=st.floats(0.0, 3.0),
       beta=st.floats(0.5, 3.0))
def test_nlb_weights_stay_non_negative_and_sum_to_one(w_nat, l_nat, l_adv, l0_nat, l0_adv, r_w, beta):
    w = normalization_loss_balance([w_nat, 1 - w_nat], [l_nat, l_adv], [l0_nat, l0_adv], r_w, beta)
    assert min(w) >= 0.0
    assert sum(w) == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(l_nat=LOSS, l_adv=LOSS, l0=LOSS)
def test_nlb_favours_the_loss_that_fell_less(l_nat, l_adv, l0):
    w_nat, w_adv = normalization_loss_balance([0.5, 0.5], [l_nat, l_adv], [l0, l0], 0.025)
    if l_nat > l_adv * (1 + 1e-9):      # (closer than that, the change is below float resolution)
        assert w_nat > w_adv
    elif l_adv > l_nat * (1 + 1e-9):
        assert w_adv > w_nat


def test_nlb_closed_form_clip_and_convergence():
    # L~ = (0.5, 1) -> r = (1/3, 2/3); w_nat = 0.5 - 0.025 (0.5 - 1/3).
    w = normalization_loss_balance([0.5, 0.5], [1.0, 2.0], [2.0, 2.0], 0.025)
    assert w == pytest.approx([0.5 - 0.025 / 6, 0.5 + 0.025 / 6])
    # A rate above 1 overshoots below zero: clipped, then renormalised.
    assert normalization_loss_balance([0.5, 0.5], [1.0, 0.0], [1.0, 1.0], 3.0) == pytest.approx([1.0, 0.0])
    for _ in range(500):
        w = normalization_loss_balance(w, [1.0, 2.0], [2.0, 2.0], 0.025)
    assert w == pytest.approx([1 / 3, 2 / 3], abs=1e-4)
    with pytest.raises(ValueError, match="length"):
        normalization_loss_balance([0.5, 0.5], [1.0], [1.0, 1.0], 0.025)


def test_temperatures_for_entropies_hit_their_targets():
    g = torch.Generator().manual_seed(3)
    logits = 5 * torch.randn(32, 10, generator=g)
    for T in (0.5, 1.0, 3.7, 25.0):
        target = float(entropy(softmax_t(logits.double(), T)).mean())
        found = temperatures_for_entropies(logits, [target])[0]
        assert found == pytest.approx(T, rel=1e-4)
        assert float(entropy(softmax_t(logits.double(), found)).mean()) == pytest.approx(target, abs=1e-6)
    assert temperatures_for_entropies(logits, [0.0])[0] == pytest.approx(1e-2)      # unreachable: the nearer end
    assert temperatures_for_entropies(logits, [math.log(10) + 1])[0] == pytest.approx(1e3)
