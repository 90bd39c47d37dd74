"""PGD adversarial training, "SAT" (Madry et al. 2018): cross-entropy on PGD examples.

The inner maximisation is ``attacks.pgd`` on the model's own cross-entropy, random uniform
start, run with the model in eval mode (so BatchNorm statistics are not updated by the attack).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ._base import Method, bounded, register_method


@dataclass
class PGDATConfig:
    eps: float | None = bounded(None, lo=0)      # Linf budget; None = the dataset's (0.3 MNIST-like, 8/255 CIFAR)
    alpha: float | None = bounded(None, lo=0, lo_open=True)    # step size; None = 2.5 * eps / steps
    steps: int = bounded(10, lo=1)
    eps_warmup: float = bounded(0.4, lo=0, hi=1)  # share of steps over which eps grows from 0 (0: off, as on CIFAR)


@register_method
class PGDAT(Method):
    name = "pgd_at"
    summary = "Madry's PGD adversarial training: cross-entropy on PGD-Linf examples"
    Config = PGDATConfig

    def loss(self, x, y, state):
        x_adv = self.student_pgd(x, y, state)
        logits_adv = self.model(x_adv)
        loss = F.cross_entropy(logits_adv, y)
        acc_adv = (logits_adv.argmax(1) == y).float().mean()
        return loss, {"ce_adv": loss.detach(), "train_acc_adv": acc_adv}
