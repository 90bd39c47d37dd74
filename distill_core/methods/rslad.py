"""Robust Soft Label Adversarial Distillation, RSLAD (Zi, Zhao, Ma, Jiang; ICCV 2021).

    L = 5/6 KL(T(x) || S(x_adv)) + 1/6 KL(T(x) || S(x))          (softmax at T = 1)

The robust teacher's ("teacher") soft labels on the *clean* x replace the hard labels in both
terms and in the attack: x_adv maximises ``KL(T(x) || S(x_adv))`` inside the Linf ball from
``x + 0.001 N(0, 1)``, with the student in eval mode. Deviation: KLs are averaged over the batch
(``batchmean``, METHODS.md); the authors' code averages over batch and classes (KL / C).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import kd_loss
from ._base import Method, bounded, register_method


@dataclass
class RSLADConfig:
    eps: float | None = bounded(None, lo=0)      # Linf budget; None = the dataset's (0.3 MNIST-like, 8/255 CIFAR)
    alpha: float | None = bounded(None, lo=0, lo_open=True)  # PGD step size; None = 2.5 * eps / steps (2/255 on CIFAR)
    steps: int = bounded(10, lo=1)
    eps_warmup: float = bounded(0.4, lo=0, hi=1)  # share of steps over which eps grows from 0 (0: off, as on CIFAR)


@register_method
class RSLAD(Method):
    name = "rslad"
    summary = "RSLAD: 5/6 KL(teacher(x) || S(x_adv)) + 1/6 KL(teacher(x) || S(x)), robust soft labels throughout"
    Config = RSLADConfig
    teacher_roles = ("teacher",)

    def loss(self, x, y, state):
        with torch.no_grad():
            logits_t = self.teachers["teacher"](x)

        def kl_from_teacher(logits, labels):   # per-sample KL(T(x) || S(x')) for PGD to maximise
            return kd_loss(logits, logits_t, 1.0, reduction="none", t_squared=False)

        x_adv = self.student_pgd(x, y, state, loss=kl_from_teacher, random_start="normal")
        kl_adv = kd_loss(self.model(x_adv), logits_t, 1.0, t_squared=False)
        kl_nat = kd_loss(self.model(x), logits_t, 1.0, t_squared=False)
        loss = 5 / 6 * kl_adv + 1 / 6 * kl_nat
        return loss, {"kl_adv": kl_adv.detach(), "kl_nat": kl_nat.detach()}
