"""Defensive distillation (Papernot, McDaniel, Wu, Jha, Swami; IEEE S&P 2016), METHODS.md section 1.

The method ``defensive`` is the student step:

    L = CE(softmax_T(S(x)), softmax_T(F(x)))      (soft labels from the frozen teacher F, same T)

Papernot relabels the training set once with ``softmax_T(F(x))``; computing the soft labels per
batch is the same thing, because the frozen teacher in eval mode (dropout off) is deterministic.

The whole procedure (teacher at T, soft labels, student at T, deployed at T = 1) and its
breaking are :mod:`distill_core.papers.defensive` (``defensive_specs``, ``train_defensive``,
``break_defensive``). The models return logits Z and temperature
lives outside them, so "deploying at T = 1" needs no change to the student: its deployed
softmax is ``softmax(Z)``, whose logits are about T times larger than an undistilled model's —
the gradient masking that Carlini & Wagner break (METHODS.md section 1a).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import soft_cross_entropy
from ._base import Method, bounded, register_method


@dataclass
class DefensiveConfig:
    T: float = bounded(20.0, lo=0, lo_open=True)           # distillation temperature; the paper sweeps 1 ... 100


@register_method
class Defensive(Method):
    name = "defensive"
    summary = "defensive distillation, student step: CE(softmax_T(S(x)), softmax_T(teacher(x))) at the same T"
    Config = DefensiveConfig
    teacher_roles = ("teacher",)

    def loss(self, x, y, state):
        logits = self.model(x)
        with torch.no_grad():
            logits_t = self.teachers["teacher"](x)
        loss = soft_cross_entropy(logits, logits_t, self.config.T)
        return loss, {"ce_soft": loss.detach()}
