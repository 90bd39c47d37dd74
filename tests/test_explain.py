"""Tests for distill_core.explain: captum attributions, 2-D decision grids, boundary slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distill_core.data import load_dataset
from distill_core.explain import boundary_slice, decision_grid, integrated_gradients, saliency
from distill_core.models import build_model


def _train(model_name: str, dataset: str, epochs: int, lr: float) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A seeded tiny model trained with Adam (batch 64) and its test set."""
    torch.manual_seed(0)
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
    return model.eval(), x_te, y_te


@pytest.fixture(scope="module")
def moons_mlp():
    return _train("mlp", "moons", epochs=15, lr=1e-2)


@pytest.fixture(scope="module")
def digits_cnn():
    return _train("small-cnn", "digits", epochs=5, lr=5e-3)


def test_saliency_is_abs_gradient_of_target_logit(digits_cnn):
    model, x, _ = digits_cnn
    x, target = x[:6], torch.tensor([0, 1, 2, 3, 4, 5])
    model.train()
    sal = saliency(model, x, target)
    assert model.training, "saliency must restore the model's mode"
    model.eval()
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg).gather(1, target[:, None]).sum(), xg)
    assert sal.shape == x.shape
    torch.testing.assert_close(sal, grad.abs())
    torch.testing.assert_close(saliency(model, x, target, abs=False), grad)


def test_saliency_defaults_to_predicted_class_and_works_under_no_grad(digits_cnn):
    model, x, _ = digits_cnn
    x = x[:4]
    pred = model(x).argmax(1)
    with torch.no_grad():
        sal = saliency(model, x)
    torch.testing.assert_close(sal, saliency(model, x, pred))


def test_integrated_gradients_completeness(digits_cnn):
    model, x, _ = digits_cnn
    x, target = x[:5], torch.tensor([3, 1, 4, 1, 5])
    baseline = torch.zeros_like(x)
    attr, delta = integrated_gradients(model, x, target, baseline=baseline, n_steps=200, return_delta=True)
    with torch.no_grad():
        gap = (model(x) - model(baseline)).gather(1, target[:, None]).squeeze(1)
    total = attr.flatten(1).sum(1)
    assert attr.shape == x.shape
    torch.testing.assert_close(total, gap, atol=0.05 + 0.02 * gap.abs().max().item(), rtol=0.0)
    torch.testing.assert_close(delta.abs(), (total - gap).abs(), atol=1e-3, rtol=1e-3)


def test_integrated_gradients_is_exact_for_a_linear_model():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x = torch.rand(4, 5)
    base = torch.full_like(x, 0.5)
    attr = integrated_gradients(model, x, 2, baseline=base, n_steps=8)
    torch.testing.assert_close(attr, (x - base) * model.weight[2].detach())


def test_decision_grid_shape_and_agreement(moons_mlp):
    model, _, _ = moons_mlp
    g = decision_grid(model, lo=-0.1, hi=1.1, resolution=25)
    assert g["xs"].shape == g["ys"].shape == (25,)
    assert g["pred"].shape == g["max_prob"].shape == (25, 25)
    assert g["probs"].shape == (25, 25, 2)
    np.testing.assert_allclose(g["probs"].sum(axis=2), 1.0, atol=1e-5)
    rows, cols = np.meshgrid(np.arange(25), np.arange(25), indexing="ij")
    pts = torch.tensor(np.stack([g["xs"][cols.ravel()], g["ys"][rows.ravel()]], 1), dtype=torch.float32)
    with torch.no_grad():
        expected = model(pts).argmax(1).numpy().reshape(25, 25)
    np.testing.assert_array_equal(g["pred"], expected)
    assert len(np.unique(g["pred"])) == 2, "a trained moons model has both classes on the square"


def test_boundary_slice_centre_is_the_prediction(digits_cnn):
    model, x, _ = digits_cnn
    for i in range(3):
        s = boundary_slice(model, x[i], radius=0.6, resolution=21)
        pred = int(model(x[i : i + 1]).argmax(1))
        assert s["pred"].shape == s["confidence"].shape == s["clipped"].shape == (21, 21)
        assert s["center_pred"] == pred == s["pred"][10, 10]
        assert s["u"][10] == 0.0 and s["v"][10] == 0.0
        assert s["clipped"][10, 10] == 0.0
        d_adv, d_rand = torch.tensor(s["directions"]).flatten(1)
        assert d_adv.abs().max() == pytest.approx(1.0) and d_rand.abs().max() == pytest.approx(1.0)
        assert abs(float(d_adv @ d_rand)) < 1e-4 * float(d_adv.norm() * d_rand.norm())
        assert s["directions"].shape == (2, *x.shape[1:])


def test_boundary_slice_points_are_clipped_and_batched(digits_cnn):
    model, x, _ = digits_cnn
    a = boundary_slice(model, x[0], direction="sign", radius=1.0, resolution=9, batch_size=7)
    b = boundary_slice(model, x[:1], direction="sign", radius=1.0, resolution=9, batch_size=1000)
    np.testing.assert_array_equal(a["pred"], b["pred"])
    assert a["clipped"].max() > 0.0
    # Walking far along the adversarial direction must reach another class on a trained model.
    assert (a["pred"] != a["center_pred"]).any()
    # The point (u, v) is clip(x + u d_adv + v d_rand): check one off-centre point by hand.
    d_adv, d_rand = torch.tensor(a["directions"])
    point = (x[0] + a["u"][8] * d_adv + a["v"][1] * d_rand).clamp(0, 1)
    assert a["pred"][1, 8] == int(model(point[None]).argmax(1))


def test_boundary_slice_explicit_direction_and_errors(moons_mlp):
    model, x, _ = moons_mlp
    s = boundary_slice(model, x[0], direction=torch.tensor([1.0, 0.0]), radius=0.2, resolution=5)
    np.testing.assert_allclose(s["directions"][0], [1.0, 0.0])
    assert abs(s["directions"][1][0]) < 1e-6, "the random direction is orthogonal to the given one"
    with pytest.raises(ValueError, match="odd"):
        boundary_slice(model, x[0], resolution=4)
    with pytest.raises(ValueError, match="zero"):
        boundary_slice(model, x[0], direction=torch.zeros(2))
    with pytest.raises(ValueError, match="one sample"):
        boundary_slice(model, x[:2])
