"""Adversarially Robust Distillation, ARD (Goldblum, Fowl, Feizi, Goldstein; AAAI 2020).

    L = a T^2 KL(softmax_T(T(x)) || softmax_T(S(x_adv))) + (1 - a) CE(S(x), y)

x_adv is PGD-Linf on the student's own cross-entropy (uniform random start), run with the
student in eval mode; the robust teacher ("teacher") sees the clean x. Deviation: the KL is
averaged over the batch (``batchmean``, the lab's convention, METHODS.md); the authors'
``nn.KLDivLoss()`` also divides by the number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses import kd_loss
from ._base import Method, bounded, register_method


@dataclass
class ARDConfig:
    T: float = bounded(30.0, lo=0, lo_open=True)               # the reference CIFAR-10 run
    a: float = bounded(1.0, lo=0, hi=1)  # weight of the distillation term; a = 1 drops the hard labels (reference run)
    eps: float | None = bounded(None, lo=0)      # Linf budget; None = the dataset's (0.3 MNIST-like, 8/255 CIFAR)
    alpha: float | None = bounded(None, lo=0, lo_open=True)    # PGD step size; None = 2.5 * eps / steps
    steps: int = bounded(10, lo=1)
    eps_warmup: float = bounded(0.4, lo=0, hi=1)  # share of steps over which eps grows from 0 (0: off, as on CIFAR)


@register_method
class ARD(Method):
    name = "ard"
    summary = "ARD: a T^2 KL(softmax_T(teacher(x)) || softmax_T(S(x_adv))) + (1 - a) CE(S(x), y)"
    Config = ARDConfig
    teacher_roles = ("teacher",)

    def loss(self, x, y, state):
        c = self.config
        x_adv = self.student_pgd(x, y, state)
        with torch.no_grad():
            logits_t = self.teachers["teacher"](x)
        kd = kd_loss(self.model(x_adv), logits_t, c.T)
        # The clean forward runs even at a = 1, as in the reference code (its BatchNorm statistics
        # see clean batches too), and its CE is logged either way.
        ce = F.cross_entropy(self.model(x), y)
        loss = c.a * kd + (1 - c.a) * ce
        return loss, {"kd_adv": kd.detach(), "ce": ce.detach()}
