"""Standard training: cross-entropy on clean data, optionally at a training temperature T.

With ``T > 1`` this is the first step of defensive distillation (Papernot et al. 2016): the
teacher is trained on ``CE(softmax(F(x) / T), y)`` and later deployed at T = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ._base import Method, bounded, register_method


@dataclass
class StandardConfig:
    T: float = bounded(1.0, lo=0, lo_open=True)  # training temperature (Papernot's teacher); 1 = plain cross-entropy


@register_method
class Standard(Method):
    name = "standard"
    summary = "cross-entropy on clean data (optionally at temperature T: the defensive-distillation teacher)"
    Config = StandardConfig

    def loss(self, x, y, state):
        logits = self.model(x)
        loss = F.cross_entropy(logits / self.config.T, y)
        return loss, {"ce": loss.detach()}
