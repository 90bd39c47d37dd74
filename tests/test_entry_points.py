"""Every public entry point that runs a model, run on models that are not in eval mode and on models
that detach their input.

(a) A Conv-BatchNorm model left in train mode (one module switched to eval, so that restoring
    "the model's mode" as one flag would be caught): each entry point must run it in eval mode,
    leave its BatchNorm running statistics and parameters untouched, restore every module's own
    mode, and give exactly the result it gives for the same model in eval mode.
(b) A model whose forward detaches its input (``net(x.detach())``): no entry point may raise
    autograd's RuntimeError; the gradient attacks return ``x`` unchanged, attributions and
    Jacobians are zero, and AutoAttack's zero-gradient check flags every sample.

``ENTRY_POINTS`` is the explicit list; a new public function that runs a model belongs in it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from distill_core import attacks, evaluate, explain
from distill_core._torch import logits_of, predict
from distill_core.lab.attack_lab import attack_one_image
from distill_core.lab.temperature import batch_entropies, image_curves
from distill_core.papers.bss import bss_paths, bss_toward_each_class
from distill_core.robustness import evaluate_robustness

N, CLASSES = 6, 4
TS = [0.5, 1.0, 4.0]


# ---------------------------------------------------------------- models and data


def conv_bn(seed: int) -> nn.Module:
    """A small Conv-BatchNorm image model, (N, 1, 8, 8) pixels -> (N, 4) logits, with running statistics
    far from a batch's own (so train-mode BatchNorm gives other logits than eval mode)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, CLASSES))
    _skew_running_stats(model)
    return model


def points_bn(seed: int) -> nn.Module:
    """The same for 2-D points in [0, 1]^2 (Linear-BatchNorm1d), for the 2-D entry points."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    _skew_running_stats(model)
    return model


def _skew_running_stats(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)


class Detached(nn.Module):
    """A model that cuts its input out of the autograd graph: its input gradient is zero."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.detach())


def make_models() -> dict[str, nn.Module]:
    """Fresh models in eval mode: two image models (attacked / teacher and student) and a 2-D one."""
    return {"img": conv_bn(0).eval(), "img2": conv_bn(1).eval(), "pts": points_bn(2).eval()}


@dataclass(frozen=True)
class Data:
    x: torch.Tensor        # (N, 1, 8, 8) pixels
    y: torch.Tensor        # (N,) the image model's own predictions, so no sample starts misclassified
    pts: torch.Tensor      # (N, 2) points in [0.05, 0.95]^2


def make_data() -> Data:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(N, 1, 8, 8, generator=gen)
    pts = 0.05 + 0.9 * torch.rand(N, 2, generator=gen)
    return Data(x, predict(make_models()["img"], x), pts)


# ---------------------------------------------------------------- the entry points


def _small(name: str) -> dict[str, Any]:
    """Quick settings per registry attack; no random start, so a zero gradient leaves x where it is."""
    return {"fgsm": {"eps": 0.3}, "pgd": {"eps": 0.3, "alpha": 0.05, "steps": 3, "random_start": False},
            "pgd_l2": {"eps": 1.0, "alpha": 0.2, "steps": 3, "random_start": False},
            "cw_linf": {"eps": 0.3, "alpha": 0.05, "steps": 3, "random_start": False},
            "cw_l2": {"steps": 5, "binary_search_steps": 2}, "jsma": {"gamma": 0.1},
            "deepfool": {"steps": 3}}[name]


def _target(d: Data) -> torch.Tensor:
    return (d.y + 1) % CLASSES


Call = Callable[[dict[str, nn.Module], Data], Any]
Check = Callable[[Any, Data], None]


def unchanged(out: torch.Tensor, d: Data) -> None:
    assert torch.equal(out, d.x), "a zero input gradient must leave x where it is"


def zeros(out: torch.Tensor, d: Data) -> None:
    assert out.shape == d.x.shape and not out.any(), "a model that detaches its input has zero attributions"


def zero_jacobian(out: torch.Tensor, d: Data) -> None:
    assert out.shape == (N, CLASSES, *d.x.shape[1:]) and not out.any()


def all_samples_flagged(report, d: Data) -> None:
    assert report.flags["zero_gradients"] == 1.0 and report.masked


def bss_did_not_move(out: dict, d: Data) -> None:
    assert not out["steps"].any(), "BSS must not move without a gradient"


def bss_zero_perturbations(out: dict, d: Data) -> None:
    assert not out["l2"].any(), "BSS must not move without a gradient"


def all_jacobians_zero(out: dict, d: Data) -> None:
    assert out["n_zero"] == N, "every Jacobian must be exactly zero"


def image_stays_and_saliency_is_zero(out, d: Data) -> None:
    assert np.array_equal(out.x_adv, out.x) and not np.any(out.saliency[0]) and not np.any(out.saliency[1])


def zero_norms(out: dict, d: Data) -> None:
    assert not out["norm"].any(), "a zero logit Jacobian gives zero softmax-Jacobian norms"


@dataclass(frozen=True)
class Entry:
    """One public entry point: how to call it, and what a model that detaches its input must give (b)."""

    name: str
    call: Call
    detached: Check | None = None        # the answer for a detaching model (None: only that it runs)
    detached_raises: str | None = None   # the documented ValueError instead (its message's words)


def _attack_entry(name: str) -> Entry:
    def call(m, d):
        kwargs = {**_small(name), **({"target": _target(d)} if name == "jsma" else {})}
        return attacks.run_attack(name, m["img"], d.x, d.y, **kwargs)
    return Entry(f"run_attack:{name}", call, unchanged)


ENTRY_POINTS: list[Entry] = [
    # attacks, through the registry (the app's and the CLI's call) ...
    *[_attack_entry(name) for name in attacks.list_attacks()],
    # ... and each attack function called directly
    Entry("fgsm", lambda m, d: attacks.fgsm(m["img"], d.x, d.y, eps=0.3), unchanged),
    Entry("pgd", lambda m, d: attacks.pgd(m["img"], d.x, d.y, **_small("pgd")), unchanged),
    Entry("pgd (random start)", lambda m, d: attacks.pgd(m["img"], d.x, d.y, eps=0.3, alpha=0.05, steps=3)),
    Entry("cw_linf", lambda m, d: attacks.cw_linf(m["img"], d.x, d.y, **_small("cw_linf")), unchanged),
    Entry("cw_l2", lambda m, d: attacks.cw_l2(m["img"], d.x, d.y, **_small("cw_l2")), unchanged),
    Entry("jsma", lambda m, d: attacks.jsma(m["img"], d.x, d.y, target=_target(d), gamma=0.1), unchanged),
    Entry("jsma (softmax)", lambda m, d: attacks.jsma(m["img"], d.x, d.y, target=_target(d), gamma=0.1,
                                                      on="softmax", temperature=10.0), unchanged),
    Entry("deepfool", lambda m, d: attacks.deepfool(m["img"], d.x, d.y, steps=3), unchanged),
    Entry("craft_bss", lambda m, d: attacks.craft_bss(m["img"], d.x, target=_target(d), max_steps=3), unchanged),
    # the lab's robust accuracy
    Entry("evaluate_robustness:pgd-ce",
          lambda m, d: evaluate_robustness(m["img"], d.x, d.y, eps=0.3, protocol="pgd-ce"), all_samples_flagged),
    Entry("evaluate_robustness:autoattack-fast",
          lambda m, d: evaluate_robustness(m["img"], d.x, d.y, eps=0.3, protocol="autoattack-fast"),
          all_samples_flagged),
    Entry("evaluate_robustness:autoattack",
          lambda m, d: evaluate_robustness(m["img"], d.x, d.y, eps=0.1, protocol="autoattack"), all_samples_flagged),
    # metrics
    Entry("evaluate.accuracy", lambda m, d: evaluate.accuracy(m["img"], (d.x, d.y))),
    Entry("evaluate.mean_confidence", lambda m, d: evaluate.mean_confidence(m["img"], d.x, d.y, T=2.0)),
    Entry("evaluate.accuracy_under_attack:pgd",
          lambda m, d: evaluate.accuracy_under_attack(m["img"], d.x, d.y, "pgd", **_small("pgd"))),
    Entry("evaluate.accuracy_under_attack:jsma (every target)",
          lambda m, d: evaluate.accuracy_under_attack(m["img"], d.x, d.y, "jsma", gamma=0.1)),
    Entry("evaluate.attack_table",
          lambda m, d: evaluate.attack_table(m["img"], (d.x, d.y), ["fgsm", "pgd"], settings={"pgd": _small("pgd")})),
    Entry("evaluate.input_jacobian", lambda m, d: evaluate.input_jacobian(m["img"], d.x), zero_jacobian),
    Entry("evaluate.input_jacobian (logits)", lambda m, d: evaluate.input_jacobian(m["img"], d.x, wrt="logits"),
          zero_jacobian),
    Entry("evaluate.gradient_amplitude_stats", lambda m, d: evaluate.gradient_amplitude_stats(m["img"], d.x),
          all_jacobians_zero),
    Entry("evaluate.targeted_success_rate",
          lambda m, d: evaluate.targeted_success_rate(m["img"], d.x, d.y, "jsma", n_samples=3, gamma=0.1)),
    Entry("evaluate.rho_adv", lambda m, d: evaluate.rho_adv(m["img"], d.x, d.y, n_samples=2, gamma=0.2)),
    Entry("evaluate.boundary_similarity",
          lambda m, d: evaluate.boundary_similarity(m["img"], m["img"], d.x, "sampled", max_steps=3)),
    # explanations
    Entry("explain.saliency", lambda m, d: explain.saliency(m["img"], d.x), zeros),
    Entry("explain.saliency (target)", lambda m, d: explain.saliency(m["img"], d.x, target=_target(d), abs=False),
          zeros),
    Entry("explain.integrated_gradients",
          lambda m, d: explain.integrated_gradients(m["img"], d.x, n_steps=8, return_delta=True),
          lambda out, d: zeros(out[0], d)),
    Entry("explain.decision_grid", lambda m, d: explain.decision_grid(m["pts"], resolution=9)),
    Entry("explain.boundary_slice", lambda m, d: explain.boundary_slice(m["img"], d.x[0], resolution=5),
          detached_raises="direction is zero"),
    Entry("explain.boundary_slice (sign)",
          lambda m, d: explain.boundary_slice(m["img"], d.x[0], direction="sign", resolution=5),
          detached_raises="direction is zero"),
    Entry("explain.boundary_slice (given direction)",
          lambda m, d: explain.boundary_slice(m["img"], d.x[0], direction=torch.ones(1, 8, 8), resolution=5)),
    # running a model
    Entry("logits_of", lambda m, d: logits_of(m["img"], d.x)),
    Entry("predict", lambda m, d: predict(m["img"], d.x)),
    # the pages' back-ends
    Entry("attack_one_image",
          lambda m, d: attack_one_image({"a": m["img"], "b": m["img2"]}, "a", d.x[:1], int(d.y[0]), "fgsm", eps=0.3),
          image_stays_and_saliency_is_zero),
    Entry("attack_one_image (pgd, no label)",
          lambda m, d: attack_one_image({"a": m["img"], "b": m["img2"]}, "a", d.x[:1], None, "pgd", eps=0.3,
                                        alpha=0.05, steps=3)),
    Entry("lab.temperature.image_curves", lambda m, d: image_curves(m["img"], d.x[:1], TS), zero_norms),
    Entry("lab.temperature.batch_entropies", lambda m, d: batch_entropies(m["img"], d.x, 4, TS)),
    Entry("papers.bss.bss_paths", lambda m, d: bss_paths(m["pts"], d.pts, max_steps=3), bss_did_not_move),
    Entry("papers.bss.bss_toward_each_class", lambda m, d: bss_toward_each_class(m["img"], d.x[0], max_steps=3),
          bss_zero_perturbations),
]
IDS = [e.name for e in ENTRY_POINTS]


# ---------------------------------------------------------------- helpers


def _run(entry: Entry, models: dict[str, nn.Module], data: Data) -> Any:
    """The entry point with the global RNG seeded (random starts) and the caller's RNG state kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return entry.call(models, data)


def _modes(models: dict[str, nn.Module]) -> dict[str, list[bool]]:
    return {k: [m.training for m in model.modules()] for k, model in models.items()}


def _state(models: dict[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    return {k: {n: t.detach().clone() for n, t in model.state_dict().items()} for k, model in models.items()}


def assert_same(a: Any, b: Any, where: str = "result") -> None:
    """Equal results, bit for bit (NaN equal to NaN); timings (``seconds``) are not results."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        a, b = dataclasses.asdict(a), dataclasses.asdict(b)
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            if k != "seconds":
                assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a.nan_to_num(), b.nan_to_num()), \
            f"{where} differs from the eval-mode result"
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{where} differs from the eval-mode result"
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or a == b, f"{where}: {a} vs {b} (eval mode)"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r} (eval mode)"


# ---------------------------------------------------------------- (a) train mode


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=IDS)
def test_entry_point_runs_the_model_in_eval_mode_and_restores_every_module(entry: Entry) -> None:
    data = make_data()
    expected = _run(entry, make_models(), data)

    models = make_models()
    for model in models.values():
        model.train()
        model[-1].eval()          # a mixed state: each module's own mode must come back, not one flag
    modes, state = _modes(models), _state(models)
    got = _run(entry, models, data)

    assert _modes(models) == modes, "every module's train/eval mode must be restored"
    for key, model in models.items():
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, state[key][name]), f"{key}.{name} changed (BatchNorm statistics moved?)"
        assert all(p.grad is None for p in model.parameters()), f"{key}: parameter gradients were written"
    assert_same(got, expected)


def test_a_pgd_step_on_a_train_mode_model_is_the_eval_mode_step() -> None:
    """The report's case: one PGD step used to move BatchNorm's statistics twice and give another x_adv."""
    data = make_data()
    model = make_models()["img"].train()
    bn = model[1]
    before = (bn.running_mean.clone(), int(bn.num_batches_tracked))
    x_adv = attacks.pgd(model, data.x, data.y, eps=0.3, alpha=0.1, steps=1, random_start=False)
    assert torch.equal(bn.running_mean, before[0]) and int(bn.num_batches_tracked) == before[1]
    assert model.training and bn.training
    reference = attacks.pgd(make_models()["img"], data.x, data.y, eps=0.3, alpha=0.1, steps=1, random_start=False)
    assert torch.equal(x_adv, reference)


def test_modes_come_back_when_an_entry_point_raises() -> None:
    data = make_data()
    model = make_models()["img"].train()
    with pytest.raises(ValueError, match="unknown attack loss"):
        attacks.pgd(model, data.x, data.y, eps=0.3, alpha=0.1, steps=1, loss="nosuch")
    assert all(m.training for m in model.modules())


# ---------------------------------------------------------------- (b) a model that detaches its input


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=IDS)
def test_entry_point_copes_with_a_model_that_detaches_its_input(entry: Entry) -> None:
    data = make_data()
    models = {k: Detached(m) for k, m in make_models().items()}
    if entry.detached_raises:
        with pytest.raises(ValueError, match=entry.detached_raises):
            _run(entry, models, data)
        return
    out = _run(entry, models, data)
    if entry.detached is not None:
        entry.detached(out, data)


def test_the_detaching_model_really_has_no_input_gradient() -> None:
    """The premise of (b): autograd alone refuses to differentiate this model's output by its input."""
    x = make_data().x.requires_grad_(True)
    out = Detached(make_models()["img"])(x).sum()
    with pytest.raises(RuntimeError):
        torch.autograd.grad(out, x)
