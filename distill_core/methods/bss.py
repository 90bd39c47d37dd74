"""Knowledge distillation with boundary-supporting samples, BSS (Heo, Lee, Yun, Choi; AAAI 2019).

METHODS.md section 2. Each batch, on top of Hinton's KD at T = 3 (no T^2 factor):

    L = CE(S(x), y) + alpha * KD_T(T(x), S(x)) + beta * KD_T(T(x_bss), S(x_bss))

``KD_T`` is the cross-entropy between the teacher's and student's softmax at T. The boundary-
supporting samples x_bss are crafted on the frozen teacher ("teacher") from base samples both
networks classify correctly (:func:`select_base_samples`), each pushed towards one target class
drawn from the teacher's non-top classes (``attacks.sample_bss_targets``) by ``attacks.craft_bss``.
alpha falls 4 -> 1 over training and beta 2 -> 0 by 75 % of it (:func:`bss_alpha`, :func:`bss_beta`).

Deviations from the reference code (bhheo/BSS_distillation): epochs are counted from 0 here, so
the schedules start exactly at 4 and 2 (the reference counts from 1); base samples must be
correct for teacher *and* student as the paper states (that code checks the teacher only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..attacks import craft_bss, sample_bss_targets
from ..losses import soft_cross_entropy
from ._base import Method, bounded, register_method

REFERENCE_BATCH = 256     # attack_size is given per batch of this size, as in the paper


@dataclass
class BSSConfig:
    T: float = bounded(3.0, lo=0, lo_open=True)
    attack_size: int = bounded(64, lo=0)     # at most this many BSS per batch of 256; scaled to the actual batch size
    eta: float = bounded(0.3, lo=0, lo_open=True)          # crafting step size
    eps: float = bounded(1e-4, lo=0)  # the margin offset in the crafting step (L_k + eps), not a perturbation budget
    max_steps: int = bounded(10, lo=1)       # I_max, crafting steps


def bss_alpha(epoch: float, epochs: float) -> float:
    """Weight of the clean KD term at epoch e of E: ``max(3 (1 - e/E), 0) + 1`` (4 -> 1)."""
    return max(3 * (1 - epoch / epochs), 0.0) + 1


def bss_beta(epoch: float, epochs: float) -> float:
    """Weight of the BSS KD term at epoch e of E: ``max(2 (1 - 4e / (3E)), 0)`` (2 -> 0 at 75 %)."""
    return max(2 * (1 - 4 * epoch / (3 * epochs)), 0.0)


def select_base_samples(probs_t: torch.Tensor, probs_s: torch.Tensor, y: torch.Tensor, size: int) -> torch.Tensor:
    """Indices (into the batch) of BSS base samples: correct for both teacher and student.

    ``probs_t`` / ``probs_s`` (N, C) are the teacher's and student's softmax (at T = 1), ``y`` (N,).
    When more than ``size`` qualify, keeps the ``size`` with the largest disagreement
    ``sum_{c != y} (p_t,c - p_s,c)^2``, most disagreeing first.
    """
    correct = (probs_t.argmax(1) == y) & (probs_s.argmax(1) == y)
    idx = correct.nonzero().squeeze(1)
    if len(idx) <= size:
        return idx
    diff = (probs_t[idx] - probs_s[idx]) ** 2
    score = diff.sum(1) - diff.gather(1, y[idx, None]).squeeze(1)
    return idx[score.topk(size).indices]


@register_method
class BSS(Method):
    name = "bss"
    summary = "KD with boundary-supporting samples crafted on the teacher: CE + alpha KD_T(x) + beta KD_T(x_bss)"
    Config = BSSConfig
    teacher_roles = ("teacher",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = bss_alpha(0, 1)
        self.beta = bss_beta(0, 1)

    def on_epoch_start(self, state):
        self.alpha = bss_alpha(state.epoch, state.epochs)
        self.beta = bss_beta(state.epoch, state.epochs)

    def loss(self, x, y, state):
        c = self.config
        teacher = self.teachers["teacher"]
        logits = self.model(x)
        with torch.no_grad():
            logits_t = teacher(x)
        ce = F.cross_entropy(logits, y)
        kd = soft_cross_entropy(logits, logits_t, c.T)
        loss = ce + self.alpha * kd
        kd_bss = torch.zeros((), device=x.device)
        n_bss = 0
        if self.beta > 0:   # no crafting once the schedule has switched the term off
            probs_t = F.softmax(logits_t, 1)
            size = max(1, round(c.attack_size * len(x) / REFERENCE_BATCH))
            idx = select_base_samples(probs_t, F.softmax(logits.detach(), 1), y, size)
            n_bss = len(idx)
            if n_bss:
                target = sample_bss_targets(probs_t[idx])
                x_bss = craft_bss(teacher, x[idx], target=target, eta=c.eta, eps=c.eps, max_steps=c.max_steps)
                with torch.no_grad():
                    logits_t_bss = teacher(x_bss)
                kd_bss = soft_cross_entropy(self.model(x_bss), logits_t_bss, c.T)
                loss = loss + self.beta * kd_bss
        return loss, {"ce": ce.detach(), "kd": kd.detach(), "kd_bss": kd_bss.detach(), "alpha": self.alpha,
                      "beta": self.beta, "n_bss": n_bss}
