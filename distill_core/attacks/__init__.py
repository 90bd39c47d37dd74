"""Adversarial attacks: one module per attack, one call shape, batched, with a per-step trace.

Every attack is a plain function ``attack(model, x, y, *, ..., target=None, trace=None) -> x_adv``
on a whole batch of pixels in [0, 1]; it never modifies ``x``, runs the model in eval mode
(every module's own train/eval mode is restored afterwards, so BatchNorm statistics never move),
leaves parameter gradients alone, runs on the device the model and ``x`` are on, and switches
gradients on for itself (it works inside ``torch.no_grad()``). A model that detaches its input
(zero input gradient) is no error: the gradient attacks then return ``x`` (or their random
start), as its gradient gives them no direction. The registry lets the
app and the CLI take attacks by name, with defaults scaled to the dataset::

    from distill_core.attacks import pgd, run_attack
    x_adv = pgd(model, x, y, eps=0.3, alpha=0.01, steps=40)
    x_adv = run_attack("jsma", model, x, y, info=info, target=(y + 1) % 10)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..data import DatasetInfo
from ._common import best_other, jacobian, margin
from .bss import craft_bss, sample_bss_targets
from .cw_l2 import cw_l2
from .cw_linf import cw_linf
from .deepfool import deepfool
from .fgsm import fgsm
from .jsma import jsma
from .pgd import pgd

__all__ = ["AttackSpec", "attack_defaults", "best_other", "craft_bss", "cw_l2", "cw_linf", "deepfool",
           "describe_attack", "fgsm", "get_attack", "jacobian", "jsma", "list_attacks", "margin", "pgd",
           "run_attack", "sample_bss_targets"]


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: the function, what it is in one line, its distance and call options."""

    name: str
    fn: Callable[..., torch.Tensor]
    description: str
    distance: str                     # "linf", "l2" or "l0"
    targeted_only: bool = False
    fixed: tuple[tuple[str, object], ...] = ()      # arguments the name implies (pgd_l2: norm="l2")


_ATTACKS: dict[str, AttackSpec] = {}


def _register(spec: AttackSpec) -> None:
    _ATTACKS[spec.name] = spec


_register(AttackSpec("fgsm", fgsm, "FGSM: one signed-gradient step of size eps (Goodfellow et al. 2015)", "linf"))
_register(AttackSpec("pgd", pgd, "PGD-Linf: signed steps projected on the eps-ball (Madry et al. 2018)", "linf"))
_register(AttackSpec("pgd_l2", pgd, "PGD-L2: unit-gradient steps projected on the L2 ball (Madry et al. 2018)",
                     "l2", fixed=(("norm", "l2"),)))
_register(AttackSpec("cw_linf", cw_linf, "CW-inf of the distillation papers: PGD-Linf on the C&W margin loss "
                     "(kappa 50), not C&W's own L-inf attack", "linf"))
_register(AttackSpec("cw_l2", cw_l2, "Carlini & Wagner L2: tanh box, Adam, binary search over c (2017)", "l2"))
_register(AttackSpec("jsma", jsma, "JSMA: change the two most salient pixels at a time towards a target class "
                     "(Papernot et al. 2016)", "l0", targeted_only=True))
_register(AttackSpec("deepfool", deepfool, "DeepFool: step to the nearest linearised boundary "
                     "(Moosavi-Dezfooli et al. 2016)", "l2"))


def list_attacks() -> list[str]:
    """Registered attack names, in registration order."""
    return list(_ATTACKS)


def get_attack(name: str) -> AttackSpec:
    """The :class:`AttackSpec` of ``name``; ``ValueError`` listing the names for an unknown one."""
    if name not in _ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose from: {', '.join(_ATTACKS)}")
    return _ATTACKS[name]


def describe_attack(name: str) -> str:
    """One line on what the attack is."""
    return get_attack(name).description


def _budget(info: DatasetInfo | None, x: torch.Tensor | None = None) -> str:
    """Which default budget applies: from ``info``, else guessed from the batch's shape."""
    if info is not None:
        return "points" if not info.is_image else ("cifar" if info.default_eps < 0.1 else "mnist")
    if x is not None and x.dim() == 2:
        return "points"
    return "cifar" if x is not None and x.dim() == 4 and x.shape[1] == 3 else "mnist"


def attack_defaults(name: str, info: DatasetInfo | None = None) -> dict:
    """Default keyword arguments of attack ``name`` for a dataset (the app's initial widget values).

    MNIST-like (``info.default_eps >= 0.1``, and ``info=None``): Linf eps 0.3, alpha 0.01,
    40 steps; L2 eps 2.0. CIFAR-like: eps 8/255, alpha 2/255, 10 steps (CW-inf: 20, as in the
    papers); L2 eps 0.5. 2-D points (in [0.05, 0.95]^2): the MNIST step settings with eps 0.1,
    a budget that moves points visibly without crossing the whole plane. JSMA uses Papernot's
    gamma = 0.145 (112 of 784 MNIST pixels).
    """
    return _defaults(name, _budget(info))


def _defaults(name: str, budget: str) -> dict:
    spec = get_attack(name)
    eps, alpha, steps = {"mnist": (0.3, 0.01, 40), "cifar": (8 / 255, 2 / 255, 10), "points": (0.1, 0.01, 40)}[budget]
    l2_eps = {"mnist": 2.0, "cifar": 0.5, "points": 0.1}[budget]
    defaults: dict[str, dict] = {
        "fgsm": {"eps": eps},
        "pgd": {"eps": eps, "alpha": alpha, "steps": steps},
        "pgd_l2": {"eps": l2_eps, "alpha": 2.5 * l2_eps / steps, "steps": steps},
        "cw_linf": {"eps": eps, "alpha": alpha, "steps": max(steps, 20), "kappa": 50.0},
        "cw_l2": {"c": 1e-3, "kappa": 0.0, "steps": 100, "lr": 0.1, "binary_search_steps": 9},
        "jsma": {"theta": 1.0, "gamma": 0.145},
        "deepfool": {"overshoot": 0.02, "steps": 50},
    }
    return {**defaults[spec.name], **dict(spec.fixed)}


def run_attack(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, info: DatasetInfo | None = None,
               **overrides) -> torch.Tensor:
    """Run attack ``name`` with :func:`attack_defaults` updated by ``overrides`` (e.g. ``eps=``,
    ``target=``, ``trace=``); the one call the app and the CLI use. Without ``info`` the defaults
    are chosen from the batch's shape (2-D points, 3-channel = CIFAR-like, else MNIST-like).

    Raises ``ValueError`` for an option the attack does not take, and for a targeted-only
    attack (JSMA) called without ``target``.
    """
    spec = get_attack(name)
    kwargs = {**_defaults(name, _budget(info, x)), **overrides, **dict(spec.fixed)}
    accepted = set(inspect.signature(spec.fn).parameters) - {"model", "x", "y"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"attack {name!r} takes no option(s) {', '.join(unknown)}; options: "
                         f"{', '.join(sorted(accepted))}")
    if spec.targeted_only and kwargs.get("target") is None:
        raise ValueError(f"attack {name!r} is targeted only: pass target= (one class per sample)")
    return spec.fn(model, x, y, **kwargs)
