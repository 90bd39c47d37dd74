"""Property tests for distill_core.attacks: identities, ranges, success on a small trained model,
no aliasing across the batch, model state left alone, the registry, the trace and BSS crafting."""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from distill_core.attacks import (
    attack_defaults,
    best_other,
    craft_bss,
    cw_l2,
    cw_linf,
    deepfool,
    fgsm,
    get_attack,
    jacobian,
    jsma,
    list_attacks,
    margin,
    pgd,
    run_attack,
    sample_bss_targets,
)
from distill_core.attacks.jsma import best_pairs
from distill_core.data import load_dataset
from tests._attack_fixtures import digits_model

HYPOTHESIS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def mlp():
    """An MLP trained on 8x8 digits (about 97 % test accuracy) and 40 test images it classifies correctly."""
    model, x, y, info = digits_model("mlp")
    return model, x[:40], y[:40], info


def l2(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).norm(dim=1)


def linf(delta: torch.Tensor) -> torch.Tensor:
    return delta.flatten(1).abs().amax(1)


# ---------------------------------------------------------------- identities and ranges


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("start", [True, "normal", False])
@pytest.mark.parametrize("loss", ["ce", "cw", "softmax"])
def test_pgd_with_eps_zero_returns_the_input_bitwise(mlp, norm, start, loss):
    model, x, y, _ = mlp
    assert torch.equal(pgd(model, x, y, eps=0.0, alpha=0.1, steps=3, norm=norm, random_start=start, loss=loss), x)


def test_fgsm_and_cw_linf_with_eps_zero_return_the_input(mlp):
    model, x, y, _ = mlp
    assert torch.equal(fgsm(model, x, y, eps=0.0), x)
    assert torch.equal(cw_linf(model, x, y, eps=0.0, alpha=0.05, steps=3), x)


@HYPOTHESIS
@given(eps=st.floats(0.01, 0.6), alpha=st.floats(0.005, 0.3), steps=st.integers(0, 4),
       norm=st.sampled_from(["linf", "l2"]), start=st.sampled_from([True, "normal", False]),
       loss=st.sampled_from(["ce", "cw", "softmax"]), targeted=st.booleans())
def test_pgd_stays_in_the_box_and_the_ball(mlp, eps, alpha, steps, norm, start, loss, targeted):
    model, x, y, _ = mlp
    target = (y + 3) % 10 if targeted else None
    x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=start, loss=loss,
                target=target)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    size = linf(x_adv - x) if norm == "linf" else l2(x_adv - x)
    assert (size <= eps * (1 + 1e-5) + 1e-6).all()


@HYPOTHESIS
@given(eps=st.floats(0.0, 1.0), targeted=st.booleans())
def test_fgsm_is_one_signed_step_clipped(mlp, eps, targeted):
    model, x, y, _ = mlp
    target = (y + 1) % 10 if targeted else None
    x_adv = fgsm(model, x, y, eps=eps, target=target)
    x_req = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x_req), target if targeted else y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_req)
    step = -grad.sign() if targeted else grad.sign()
    assert torch.allclose(x_adv, (x + eps * step).clamp(0, 1), atol=1e-7)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_clipped_to_the_box_and_in_the_ball(norm):
    # Pixels at 0 and 1 are where an unclipped uniform start leaves [0, 1].
    x = torch.tensor([0.0, 1.0, 0.5, 0.02]).repeat(64, 4)
    model = nn.Linear(16, 3)
    for start in (True, "normal"):
        x0 = pgd(model, x, torch.zeros(64, dtype=torch.long), eps=0.5, alpha=0.1, steps=0, norm=norm,
                 random_start=start, start_std=0.3)
        assert x0.min() >= 0 and x0.max() <= 1
        assert not torch.equal(x0, x), "the start must be random"
        size = linf(x0 - x) if norm == "linf" else l2(x0 - x)
        assert (size <= 0.5 + 1e-6).all()
    # Uniform in the Linf ball: about half the zero pixels move up, none goes below 0.
    x0 = pgd(model, x, torch.zeros(64, dtype=torch.long), eps=0.5, alpha=0.1, steps=0, random_start=True)
    moved = (x0[:, 0::4] > 0).float().mean()
    assert 0.35 < moved < 0.65


def test_unknown_options_are_refused(mlp):
    model, x, y, _ = mlp
    with pytest.raises(ValueError, match="norm"):
        pgd(model, x, y, eps=0.1, alpha=0.1, steps=1, norm="l1")
    with pytest.raises(ValueError, match="random_start"):
        pgd(model, x, y, eps=0.1, alpha=0.1, steps=1, random_start="gaussian")
    with pytest.raises(ValueError, match="loss"):
        pgd(model, x, y, eps=0.1, alpha=0.1, steps=1, loss="hinge")
    with pytest.raises(ValueError, match="on must be"):
        jsma(model, x, y, target=(y + 1) % 10, on="probs")


# ---------------------------------------------------------------- success on a trained model


def test_untargeted_attacks_fool_the_trained_model(mlp):
    model, x, y, _ = mlp
    torch.manual_seed(0)
    for name in ("pgd", "cw_linf", "pgd_l2"):
        with torch.no_grad():                         # attacks switch gradients on for themselves
            fooled = model(run_attack(name, model, x, y, eps=0.3 if name != "pgd_l2" else 2.0)).argmax(1) != y
        assert fooled.float().mean() >= 0.9, name


@pytest.mark.parametrize("name", ["pgd", "cw_linf", "cw_l2", "jsma"])
def test_targeted_attacks_reach_the_target(mlp, name):
    model, x, y, _ = mlp
    torch.manual_seed(0)
    target = (y + 1) % 10
    # JSMA on the softmax: on this MLP's logits some samples run out of valid pairs (see below).
    kwargs = {"cw_l2": {"steps": 50, "binary_search_steps": 4, "c": 1.0},
              "jsma": {"on": "softmax", "gamma": 1.0}}.get(name, {})
    x_adv = run_attack(name, model, x, y, target=target, **kwargs)
    with torch.no_grad():
        reached = model(x_adv).argmax(1) == target
    assert reached.float().mean() >= 0.85, name


def test_cw_l2_and_deepfool_find_smaller_l2_than_fgsm(mlp):
    model, x, y, _ = mlp
    with torch.no_grad():
        x_fgsm = fgsm(model, x, y, eps=0.3)
        fgsm_ok = model(x_fgsm).argmax(1) != y
    fgsm_median = l2(x_fgsm - x)[fgsm_ok].median()
    for x_adv in (cw_l2(model, x, y, steps=50, binary_search_steps=6), deepfool(model, x, y)):
        with torch.no_grad():
            fooled = model(x_adv).argmax(1) != y
        assert fooled.float().mean() >= 0.95
        assert l2(x_adv - x)[fooled].median() < 0.5 * fgsm_median
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_cw_l2_binary_search_shrinks_the_perturbation(mlp):
    model, x, y, _ = mlp
    one = cw_l2(model, x, y, c=10.0, steps=50, binary_search_steps=1)
    more = cw_l2(model, x, y, c=10.0, steps=50, binary_search_steps=5)
    with torch.no_grad():
        both = (model(one).argmax(1) != y) & (model(more).argmax(1) != y)
    assert both.float().mean() > 0.9
    assert (l2(more - x)[both] <= l2(one - x)[both] + 1e-6).all()
    assert l2(more - x)[both].median() < l2(one - x)[both].median()


def test_cw_l2_returns_unbroken_samples_unchanged(mlp):
    model, x, y, _ = mlp
    x_adv = cw_l2(model, x, y, c=1e-4, steps=5, binary_search_steps=1)
    with torch.no_grad():
        still = model(x_adv).argmax(1) == y
    assert still.any()
    assert torch.equal(x_adv[still], x[still])


def test_deepfool_on_the_top_classes_only_still_succeeds(mlp):
    model, x, y, _ = mlp
    x_adv = deepfool(model, x, y, num_classes=3)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).float().mean() >= 0.95


def test_deepfool_leaves_misclassified_samples_alone(mlp):
    model, x, y, _ = mlp
    wrong = (y + 1) % 10
    assert torch.equal(deepfool(model, x, wrong), x)


# ---------------------------------------------------------------- JSMA


def test_jsma_changes_at_most_its_budget_of_features(mlp):
    model, x, y, _ = mlp
    gamma = 0.2
    stats = {}
    x_adv = jsma(model, x, y, target=(y + 4) % 10, gamma=gamma, stats=stats)
    budget = math.floor(gamma * 64 / 2) * 2
    changed = (x_adv != x).flatten(1).sum(1)
    assert (changed <= budget).all()
    assert torch.equal(stats["features_changed"], changed)
    assert (stats["iterations"] <= budget // 2).all()
    assert torch.equal(changed, 2 * stats["iterations"]), "each iteration raises two features still below 1"
    with torch.no_grad():
        assert torch.equal(stats["success"], model(x_adv).argmax(1) == (y + 4) % 10)
    assert ((x_adv == x) | (x_adv > x)).all(), "theta = +1 only increases features"


def test_jsma_stops_each_sample_on_success(mlp):
    model, x, y, _ = mlp
    stats, trace = {}, []
    target = (y + 1) % 10
    jsma(model, x, y, target=target, gamma=1.0, on="softmax", stats=stats, trace=trace)
    assert stats["success"].all()
    # The first step at which a sample predicts its target is the last one it changes at.
    preds = torch.stack([t["pred"] for t in trace])                               # (steps, N)
    first_hit = (preds == target).float().argmax(0)
    assert torch.equal(first_hit, stats["iterations"])


def test_jsma_on_logits_gives_up_only_without_a_valid_pair(mlp):
    model, x, y, _ = mlp
    target = (y + 1) % 10
    stats = {}
    x_adv = jsma(model, x, y, target=target, gamma=1.0, stats=stats)
    assert stats["success"].float().mean() > 0.6
    for i in (~stats["success"]).nonzero().flatten().tolist():
        _, jac = jacobian(model, x_adv[i : i + 1])
        jac = jac[0].flatten(1)
        a, b = jac[target[i]], jac.sum(0) - jac[target[i]]
        domain = (x[i].flatten() < 1) & (x_adv[i].flatten() == x[i].flatten())
        pa, pb = a[:, None] + a[None], b[:, None] + b[None]
        valid = (pa > 0) & (pb < 0) & domain[:, None] & domain[None] & ~torch.eye(len(a), dtype=torch.bool)
        assert not valid.any(), f"sample {i} stopped with valid pairs left"


def test_jsma_with_negative_theta_only_decreases(mlp):
    model, x, y, _ = mlp
    x_adv = jsma(model, x, y, target=(y + 1) % 10, theta=-1.0, gamma=0.3)
    assert (x_adv <= x).all() and (x_adv != x).any()


@pytest.mark.parametrize("kind", ["independent", "correlated", "one_pareto_layer"])
def test_best_pairs_equal_brute_force(kind):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 200, generator=gen)
    b = {"independent": torch.randn(6, 200, generator=gen),
         "correlated": -a + 0.05 * torch.randn(6, 200, generator=gen),
         "one_pareto_layer": 0.5 * a - 0.2}[kind]                   # every feature is Pareto-optimal
    domain = torch.rand(6, 200, generator=gen) > 0.3
    p, q, found = best_pairs(a, b, domain, chunk=4)
    pa, pb = a[:, :, None] + a[:, None, :], b[:, :, None] + b[:, None, :]
    valid = (pa > 0) & (pb < 0) & domain[:, :, None] & domain[:, None, :] & ~torch.eye(200, dtype=torch.bool)
    best = torch.where(valid, -pa * pb, -torch.inf).flatten(1).amax(1)
    rows = torch.arange(6)
    assert found.all() and (p != q).all() and domain[rows, p].all() and domain[rows, q].all()
    assert torch.allclose(-(a[rows, p] + a[rows, q]) * (b[rows, p] + b[rows, q]), best, rtol=1e-6)


def test_best_pairs_reports_when_no_valid_pair_remains():
    a = torch.tensor([[-1.0, -2.0, 3.0, 0.5]])
    b = torch.tensor([[1.0, 1.0, -2.0, 2.0]])
    # Features 0 and 1 alone: a = -3 < 0, no valid pair.
    _, _, found = best_pairs(a, b, torch.tensor([[True, True, False, False]]))
    assert not found.any()
    # Adding feature 2: (0, 2) scores -(2)(-1) = 2, (1, 2) scores -(1)(-1) = 1.
    p, q, found = best_pairs(a, b, torch.tensor([[True, True, True, False]]))
    assert found.all() and sorted([int(p), int(q)]) == [0, 2]


def test_jsma_fits_a_3x32x32_batch():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.9
    stats = {}
    x_adv = jsma(model, x, torch.zeros(8, dtype=torch.long), target=torch.arange(8) % 10, gamma=0.01, stats=stats)
    assert x_adv.shape == x.shape and (stats["features_changed"] <= 30).all()


# ---------------------------------------------------------------- no aliasing, model state left alone


DETERMINISTIC = {
    "fgsm": lambda m, x, y, t: fgsm(m, x, y, eps=0.2),
    "pgd": lambda m, x, y, t: pgd(m, x, y, eps=0.2, alpha=0.05, steps=5, random_start=False),
    "pgd_l2": lambda m, x, y, t: pgd(m, x, y, eps=1.0, alpha=0.3, steps=5, norm="l2", random_start=False),
    "cw_linf": lambda m, x, y, t: cw_linf(m, x, y, eps=0.2, alpha=0.05, steps=5, random_start=False),
    "cw_l2": lambda m, x, y, t: cw_l2(m, x, y, steps=10, binary_search_steps=3, c=0.1),
    "deepfool": lambda m, x, y, t: deepfool(m, x, y, steps=10),
    "jsma": lambda m, x, y, t: jsma(m, x, y, target=t, gamma=0.2),
    "bss": lambda m, x, y, t: craft_bss(m, x, target=t),
}


@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_attacking_a_batch_equals_attacking_each_sample(mlp, name):
    model, x, y, _ = mlp
    model = copy.deepcopy(model).double()             # float64: batched and single matmuls round alike
    x, y = x[:6].double(), y[:6]
    target = (y + 2) % 10
    x_before = x.clone()
    batch = DETERMINISTIC[name](model, x, y, target)
    assert torch.equal(x, x_before), "the attack modified its input"
    assert not torch.equal(batch, x), "the attack did something"
    for i in range(len(x)):
        alone = DETERMINISTIC[name](model, x[i : i + 1], y[i : i + 1], target[i : i + 1])
        assert torch.allclose(batch[i : i + 1], alone, atol=1e-9), f"sample {i}"


def _small_settings(name: str, y: torch.Tensor) -> dict:
    """Few steps, and a target for the targeted-only attack."""
    settings = {"steps": 2} if name not in ("fgsm", "jsma") else {}
    if name == "cw_l2":
        settings["binary_search_steps"] = 2
    if name == "jsma":
        settings["target"] = (y + 1) % 10
    return settings


@pytest.mark.parametrize("name", list_attacks())
@pytest.mark.parametrize("training", [False, True])
def test_attacks_leave_model_mode_and_parameter_grads_alone(mlp, name, training):
    model, x, y, info = mlp
    model = copy.deepcopy(model).train(training)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    run_attack(name, model, x[:8], y[:8], info=info, **_small_settings(name, y[:8]))
    assert model.training is training
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list_attacks())
def test_attacks_run_on_the_models_device(mlp, name):
    model, x, y, info = mlp
    model, x, y = copy.deepcopy(model).cuda(), x[:8].cuda(), y[:8].cuda()
    x_adv = run_attack(name, model, x, y, info=info, **_small_settings(name, y))
    assert x_adv.device == x.device and x_adv.min() >= 0 and x_adv.max() <= 1


def test_craft_bss_leaves_model_state_alone(mlp):
    model, x, y, _ = mlp
    model = copy.deepcopy(model).train()
    craft_bss(model, x, target=(y + 1) % 10)
    assert model.training and all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- margins, losses, Jacobians


def test_best_other_class_is_right_when_all_logits_are_negative():
    logits = torch.tensor([[-5.0, -1.0, -3.0], [-0.5, -9.0, -2.0]])
    y = torch.tensor([1, 0])
    assert torch.equal(best_other(logits, y), torch.tensor([-3.0, -2.0]))
    assert torch.equal(margin(logits, y), torch.tensor([2.0, 1.5]))
    assert torch.equal(margin(logits, y, target=torch.tensor([2, 2])), torch.tensor([-2.0, -1.5]))


def test_margin_attacks_do_not_care_about_a_logit_shift(mlp):
    # A model whose logits are all below -50: masking the true class by multiplying with 0
    # would make 0 the "best other" logit and stop both attacks.
    model, x, y, _ = mlp
    shifted = nn.Sequential(model, _Shift(-100.0))
    a = cw_linf(model, x, y, eps=0.2, alpha=0.02, steps=10, random_start=False)
    b = cw_linf(shifted, x, y, eps=0.2, alpha=0.02, steps=10, random_start=False)
    assert torch.equal(a, b)
    c = cw_l2(shifted, x, y, steps=30, binary_search_steps=3, c=1.0)
    with torch.no_grad():
        assert (shifted(c).argmax(1) != y).float().mean() > 0.9


class _Shift(nn.Module):
    def __init__(self, by: float):
        super().__init__()
        self.by = by

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.by


def test_softmax_loss_is_masked_on_a_saturated_model_and_logit_losses_are_not(mlp):
    model, x, y, _ = mlp
    with torch.no_grad():
        sure = margin(model(x), y) > 0.5              # x 1000: the softmax is exactly one-hot in float32
    x, y = x[sure], y[sure]
    hot = nn.Sequential(model, _Scale(1000.0))        # a distilled model deployed at T = 1
    kw = {"eps": 0.3, "alpha": 0.05, "steps": 5, "random_start": False}
    assert torch.equal(pgd(hot, x, y, loss="softmax", **kw), x), "float32 softmax gradient is exactly zero"
    for loss, extra in (("cw", {}), ("ce", {"temperature": 1000.0})):
        with torch.no_grad():
            fooled = hot(pgd(hot, x, y, loss=loss, **extra, **kw)).argmax(1) != y
        assert fooled.float().mean() > 0.5, loss


def test_softmax_loss_lowers_the_true_probability_and_raises_the_targets(mlp):
    model, x, y, _ = mlp
    kw = {"eps": 0.3, "alpha": 0.02, "steps": 20, "random_start": False, "loss": "softmax"}
    target = (y + 1) % 10
    with torch.no_grad():
        probs = F.softmax(model(x), 1)
        away = F.softmax(model(pgd(model, x, y, **kw)), 1)
        towards = F.softmax(model(pgd(model, x, y, target=target, **kw)), 1)
    assert away.gather(1, y[:, None]).mean() < 0.5 * probs.gather(1, y[:, None]).mean()
    assert towards.gather(1, target[:, None]).mean() > probs.gather(1, target[:, None]).mean() + 0.3


class _Scale(nn.Module):
    def __init__(self, by: float):
        super().__init__()
        self.by = by

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.by


def test_pgd_maximises_a_callable_loss(mlp):
    model, x, y, _ = mlp
    with torch.no_grad():
        probs = F.softmax(model(x), 1)

    def kl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits, 1), probs, reduction="none").sum(1)

    x_adv = pgd(model, x, y, eps=0.1, alpha=0.02, steps=5, loss=kl, random_start="normal")
    with torch.no_grad():
        assert kl(model(x_adv), y).mean() > 10 * kl(model(x), y).mean() + 1e-3


def test_jacobian_equals_a_per_class_autograd_loop():
    model, x, _, _ = digits_model("small-cnn", 60)
    x = x[:5]
    out, jac = jacobian(model, x)
    assert jac.shape == (5, 10, 1, 8, 8)
    assert torch.allclose(out, model(x).detach(), atol=1e-6)
    for k in range(10):
        x_req = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x_req)[:, k].sum(), x_req)
        assert torch.allclose(jac[:, k], grad, atol=1e-6)
    functorch = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi[None])[0]))(x)
    assert torch.allclose(jac, functorch, atol=1e-6)


# ---------------------------------------------------------------- trace


@pytest.mark.parametrize("name", list_attacks())
def test_trace_reports_loss_margin_and_prediction_per_sample(mlp, name):
    model, x, y, info = mlp
    x, y = x[:5], y[:5]
    small = _small_settings(name, y)
    target = small.get("target")
    steps, calls = [], []
    x_adv = run_attack(name, model, x, y, info=info, trace=steps, **small)
    run_attack(name, model, x, y, info=info, trace=lambda s, i: calls.append((s, i)), **small)
    assert [s["step"] for s in steps] == [c[0] for c in calls] == list(range(len(steps)))
    assert len(steps) >= 2
    for s in steps:
        for key in ("loss", "margin", "pred"):
            assert s[key].shape == (5,) and s[key].device.type == "cpu", key
        cls = y if target is None else target
        assert torch.equal(s["margin"] > 0, s["pred"] == cls)
    if name != "cw_l2":                                # CW-L2 returns its best iterate, not its last
        with torch.no_grad():
            assert torch.equal(steps[-1]["pred"], model(x_adv).argmax(1))


def test_pgd_trace_loss_rises(mlp):
    model, x, y, _ = mlp
    trace = []
    pgd(model, x, y, eps=0.3, alpha=0.02, steps=10, random_start=False, trace=trace)
    assert trace[-1]["loss"].mean() > trace[0]["loss"].mean()
    assert trace[0]["dist"].max() == 0 and trace[-1]["dist"].max() <= 0.3 + 1e-6


# ---------------------------------------------------------------- registry


def test_registry_lists_the_attacks_with_their_kind():
    assert list_attacks() == ["fgsm", "pgd", "pgd_l2", "cw_linf", "cw_l2", "jsma", "deepfool"]
    assert get_attack("jsma").targeted_only and not get_attack("pgd").targeted_only
    assert get_attack("pgd_l2").distance == "l2" and get_attack("jsma").distance == "l0"
    assert all(get_attack(n).description for n in list_attacks())
    with pytest.raises(ValueError, match="choose from"):
        get_attack("autoattack")


def test_attack_defaults_scale_with_the_dataset():
    _, mnist = load_dataset("digits", "test")
    _, points = load_dataset("moons", "test")
    cifar = type(mnist)(name="cifar10", input_shape=(3, 32, 32), num_classes=10, class_names=mnist.class_names,
                        mean=(0.5,) * 3, std=(0.25,) * 3, embedded=False, default_eps=8 / 255)
    assert attack_defaults("pgd", mnist) == {"eps": 0.3, "alpha": 0.01, "steps": 40}
    assert attack_defaults("pgd", cifar) == {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10}
    assert attack_defaults("cw_linf", cifar)["steps"] == 20 and attack_defaults("cw_linf", cifar)["kappa"] == 50
    assert attack_defaults("pgd", points)["eps"] == 0.1
    assert attack_defaults("pgd_l2", mnist)["norm"] == "l2"
    for name in list_attacks():
        assert set(attack_defaults(name, mnist)) <= set(inspect.signature(get_attack(name).fn).parameters)


def test_run_attack_checks_its_options(mlp):
    model, x, y, info = mlp
    with pytest.raises(ValueError, match="targeted only"):
        run_attack("jsma", model, x, y, info=info)
    with pytest.raises(ValueError, match="no option"):
        run_attack("deepfool", model, x, y, info=info, eps=0.3)
    x_adv = run_attack("pgd_l2", model, x, y, info=info, norm="linf", steps=3, random_start=False)
    assert torch.equal(x_adv, pgd(model, x, y, eps=2.0, alpha=0.125, steps=3, norm="l2", random_start=False))


# ---------------------------------------------------------------- BSS


def _linear_teacher(scale: float) -> nn.Module:
    """Logits ``scale * (x1, x2, -x1 - x2)``: the margin L_0 - L_1 has gradient ``scale * (1, -1)``."""
    teacher = nn.Linear(2, 3)
    with torch.no_grad():
        teacher.weight.copy_(scale * torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        teacher.bias.zero_()
    return teacher


def test_craft_bss_takes_the_papers_step_on_a_linear_model():
    # ||grad L|| = sqrt(2) < 1 / eta: every step shrinks the margin by exactly eta (L + eps) sqrt(2).
    teacher = _linear_teacher(1.0)
    x = torch.tensor([[0.7, 0.3], [0.6, 0.5]])
    target = torch.tensor([1, 1])
    x_bss, path = craft_bss(teacher, x, target=target, eta=0.3, eps=1e-4, max_steps=6, return_path=True)
    assert path.shape == (7, 2, 2) and torch.equal(path[0], x) and torch.equal(path[-1], x_bss)
    margins = (path[..., 0] - path[..., 1]).double()                            # L_0 - L_1 per step
    expected = margins[:-1] - 0.3 * (margins[:-1] + 1e-4) * math.sqrt(2)
    assert torch.allclose(margins[1:], expected, atol=1e-6)
    assert (margins[1:] < margins[:-1]).all(), "the margin falls at every step"


def test_craft_bss_stops_each_sample_once_the_argmax_changes():
    # Logits (10 x1, 10 x2, 9 x1) at x = (0.7, 0.3), base class 0. Towards class 1 the margin's
    # gradient has norm 10 sqrt(2) > 1 / eta: one step crosses. Towards class 2 the margin is x1
    # (gradient (1, 0)): x1 shrinks by 0.3 (x1 + eps) per step until class 1 takes over (x1 < 0.3).
    teacher = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([[10.0, 0.0], [0.0, 10.0], [9.0, 0.0]]))
    x = torch.tensor([[0.7, 0.3], [0.7, 0.3]])
    _, path = craft_bss(teacher, x, target=torch.tensor([1, 2]), max_steps=10, return_path=True)
    preds = teacher(path.flatten(0, 1)).argmax(1).view(11, 2)
    assert preds[1, 0] == 1 and (path[1:, 0] == path[1, 0]).all(), "sample 0 stops after its crossing step"
    x1 = [0.7]
    while x1[-1] >= 0.3:
        x1.append(x1[-1] - 0.3 * (x1[-1] + 1e-4))
    stop = len(x1) - 1                                                   # 3 steps
    assert torch.allclose(path[: stop + 1, 1, 0], torch.tensor(x1), atol=1e-6)
    assert (preds[:stop, 1] == 0).all() and preds[stop, 1] == 1, "a third class took over"
    assert (path[stop:, 1] == path[stop, 1]).all(), "sample 1 stops there, while sample 0 already had"


def test_craft_bss_crosses_near_the_boundary_on_a_trained_model(mlp):
    model, x, y, _ = mlp
    target = sample_bss_targets(F.softmax(model(x), 1).detach(), generator=torch.Generator().manual_seed(0))
    x_bss, path = craft_bss(model, x, target=target, return_path=True)
    assert path.shape == (11, *x.shape) and x_bss.min() >= 0 and x_bss.max() <= 1
    with torch.no_grad():
        logits = model(path.flatten(0, 1)).view(11, len(x), -1)
    crossed = logits.argmax(2) != y                                              # (steps + 1, N)
    assert crossed[-1].float().mean() > 0.8
    lk = (logits.gather(2, y.view(1, -1, 1).expand(11, -1, 1)) -
          logits.gather(2, target.view(1, -1, 1).expand(11, -1, 1))).squeeze(2)
    for n in range(len(x)):
        stop = int(crossed[:, n].float().argmax()) if crossed[:, n].any() else 10
        assert (lk[1 : stop + 1, n] < lk[:stop, n]).all(), "the margin falls until the crossing"
        assert (path[stop:, n] == path[stop, n]).all(), "a sample stops once the argmax changes"


def test_sample_bss_targets_follows_the_teachers_other_classes():
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0]]).repeat(20000, 1)
    k = sample_bss_targets(probs, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(k, minlength=4).float() / len(k)
    assert counts[0] == 0 and counts[3] == 0
    assert abs(counts[1] - 2 / 3) < 0.02 and abs(counts[2] - 1 / 3) < 0.02
    one_hot = torch.tensor([[0.0, 1.0, 0.0]]).repeat(3000, 1)
    k = sample_bss_targets(one_hot, generator=torch.Generator().manual_seed(0))
    assert set(k.tolist()) == {0, 2}, "an underflowed row draws uniformly among the other classes"
