"""Cross-checks against torchattacks 3.5.1 on a small CNN with fixed (seeded, trained) weights:
FGSM and PGD without random start give the same images; CW-L2, DeepFool and JSMA succeed at
least as often."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from distill_core.attacks import cw_l2, deepfool, fgsm, jsma, pgd
from tests._attack_fixtures import digits_model


@pytest.fixture(scope="module")
def cnn():
    """small-cnn trained briefly on 8x8 digits, and 24 test images it classifies correctly."""
    model, x, y, _ = digits_model("small-cnn", 60)
    return model, x[:24], y[:24]


def fooled(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


def median_l2(x_adv: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> float:
    return float((x_adv - x).flatten(1).norm(dim=1)[mask].median())


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_fgsm_equals_torchattacks(cnn, eps):
    model, x, y = cnn
    ours = fgsm(model, x, y, eps=eps)
    theirs = torchattacks.FGSM(model, eps=eps)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.equal(ours, x)


def test_targeted_fgsm_equals_torchattacks(cnn):
    model, x, y = cnn
    target = (y + 1) % 10
    attack = torchattacks.FGSM(model, eps=0.1)
    attack.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10, quiet=True)
    assert torch.allclose(fgsm(model, x, y, eps=0.1, target=target), attack(x, y), atol=1e-5)


def test_pgd_linf_without_random_start_equals_torchattacks(cnn):
    model, x, y = cnn
    ours = pgd(model, x, y, eps=0.2, alpha=0.02, steps=15, random_start=False)
    theirs = torchattacks.PGD(model, eps=0.2, alpha=0.02, steps=15, random_start=False)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert fooled(model, ours, y).float().mean() > 0.5


def test_pgd_l2_without_random_start_equals_torchattacks(cnn):
    model, x, y = cnn
    ours = pgd(model, x, y, eps=1.0, alpha=0.2, steps=10, norm="l2", random_start=False)
    theirs = torchattacks.PGDL2(model, eps=1.0, alpha=0.2, steps=10, random_start=False)(x, y)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_cw_l2_succeeds_at_least_as_often_with_no_larger_perturbations(cnn):
    model, x, y = cnn
    ours = cw_l2(model, x, y, c=0.1, steps=50, binary_search_steps=4)
    theirs = torchattacks.CW(model, c=1.0, kappa=0.0, steps=200, lr=0.01)(x, y)
    ok_ours, ok_theirs = fooled(model, ours, y), fooled(model, theirs, y)
    assert ok_ours.float().mean() >= max(ok_theirs.float().mean(), 0.9)
    both = ok_ours & ok_theirs
    assert both.sum() >= 3, "too few samples fooled by both attacks to compare their perturbations"
    assert median_l2(ours, x, both) <= 1.1 * median_l2(theirs, x, both)


def test_deepfool_succeeds_at_least_as_often_with_comparable_perturbations(cnn):
    model, x, y = cnn
    x, y = x[:12], y[:12]                     # torchattacks' DeepFool goes one image at a time
    ours = deepfool(model, x, y, overshoot=0.02, steps=50)
    theirs = torchattacks.DeepFool(model, steps=50, overshoot=0.02)(x, y)
    ok_ours, ok_theirs = fooled(model, ours, y), fooled(model, theirs, y)
    assert ok_ours.all()
    assert ok_ours.float().mean() >= ok_theirs.float().mean()
    both = ok_ours & ok_theirs
    assert median_l2(ours, x, both) <= 1.25 * median_l2(theirs, x, both)


def test_jsma_succeeds_at_least_as_often_as_torchattacks(cnn):
    model, x, y = cnn
    x, y = x[:12], y[:12]
    target = (y + 1) % 10                     # torchattacks' JSMA default: the next class
    stats = {}
    ours = jsma(model, x, y, target=target, theta=1.0, gamma=0.5, stats=stats)
    theirs = torchattacks.JSMA(model, theta=1.0, gamma=0.5)(x, y)
    with torch.no_grad():
        ok_ours = model(ours).argmax(1) == target
        ok_theirs = model(theirs).argmax(1) == target
    assert torch.equal(ok_ours, stats["success"])
    assert ok_ours.float().mean() >= ok_theirs.float().mean() - 1 / 12
