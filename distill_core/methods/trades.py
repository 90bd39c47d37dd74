"""TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))``.

x' maximises ``KL(f(x) || f(x'))`` inside the Linf ball, from ``x + 0.001 N(0, 1)``, with the
model in eval mode; beta = 6 as in the paper. The KL is summed over classes and averaged over
the batch (``batchmean``), as in the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._torch import eval_mode
from ._base import Method, bounded, register_method


@dataclass
class TRADESConfig:
    beta: float = bounded(6.0, lo=0)
    eps: float | None = bounded(None, lo=0)      # None = the dataset's Linf budget
    alpha: float | None = bounded(None, lo=0, lo_open=True)    # None = 2.5 * eps / steps
    steps: int = bounded(10, lo=1)
    eps_warmup: float = bounded(0.4, lo=0, hi=1)  # share of steps over which eps grows from 0 (0: off, as on CIFAR)


def kl_to(probs_ref: torch.Tensor):
    """Per-sample loss ``KL(probs_ref || softmax(logits))`` for an attack to maximise."""

    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits, 1), probs_ref, reduction="none").sum(1)

    return loss_fn


@register_method
class TRADES(Method):
    name = "trades"
    summary = "TRADES: clean cross-entropy + beta * KL(f(x) || f(x')) on KL-maximising x'"
    Config = TRADESConfig

    def loss(self, x, y, state):
        with torch.no_grad(), eval_mode(self.model):
            probs_clean = F.softmax(self.model(x), 1)
        x_adv = self.student_pgd(x, y, state, loss=kl_to(probs_clean), random_start="normal")
        logits, logits_adv = self.model(x), self.model(x_adv)
        ce = F.cross_entropy(logits, y)
        robust = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits, 1), reduction="batchmean")
        loss = ce + self.config.beta * robust
        return loss, {"ce": ce.detach(), "kl_robust": robust.detach()}
