"""TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x'))``.

x' maximises ``KL(f(x) || f(x'))`` inside the Linf ball, from ``x + 0.001 N(0, 1)``, with the
model in eval mode; beta = 6 as in the paper. The KL is summed over classes and averaged over
the batch (``batchmean``), as in the authors' code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..evaluate import eval_mode
from . import Method, register_method


@dataclass
class TRADESConfig:
    beta: float = 6.0
    eps: float | None = None      # None = the dataset's Linf budget
    alpha: float | None = None    # None = 2.5 * eps / steps
    steps: int = 10
    eps_warmup: float = 0.4      # share of training over which eps grows 0 -> eps (0: off, the papers' CIFAR recipes)


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
