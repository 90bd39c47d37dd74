"""PGD adversarial training, "SAT" (Madry et al. 2018): cross-entropy on PGD examples.

The inner maximisation is ``attacks.pgd`` on the model's own cross-entropy, random uniform
start, run with the model in eval mode (so BatchNorm statistics are not updated by the attack).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from . import Method, register_method


@dataclass
class PGDATConfig:
    eps: float | None = None      # Linf budget; None = the dataset's (0.3 MNIST-like, 8/255 CIFAR)
    alpha: float | None = None    # step size; None = 2.5 * eps / steps
    steps: int = 10
    eps_warmup: float = 0.4      # share of training over which eps grows 0 -> eps (0: off, the papers' CIFAR recipes)


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
