"""Knowledge distillation (Hinton, Vinyals, Dean 2015, "Distilling the Knowledge in a Neural Network").

    L = (1 - a) CE(S(x), y) + a T^2 KL(softmax_T(T(x)) || softmax_T(S(x)))

The teacher ("teacher") is frozen and sees clean x; the ``T^2`` factor keeps the soft term's
gradient on the scale of the hard term's whatever T is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses import kd_loss
from ._base import Method, bounded, register_method


@dataclass
class KDConfig:
    # Hinton et al. found intermediate temperatures work best and the soft term should carry most
    # of the weight ("a considerably lower weight on the second objective"); T = 4, a = 0.9 is the
    # common CIFAR setting (e.g. the mdistiller and RepDistiller baselines).
    T: float = bounded(4.0, lo=0, lo_open=True)
    a: float = bounded(0.9, lo=0, hi=1)            # weight of the soft (distillation) term; 1 - a on the hard labels


@register_method
class KD(Method):
    name = "kd"
    summary = "Hinton KD: (1 - a) CE(S(x), y) + a T^2 KL(softmax_T(teacher) || softmax_T(student))"
    Config = KDConfig
    teacher_roles = ("teacher",)

    def loss(self, x, y, state):
        c = self.config
        logits = self.model(x)
        with torch.no_grad():
            logits_t = self.teachers["teacher"](x)
        ce = F.cross_entropy(logits, y)
        kd = kd_loss(logits, logits_t, c.T)
        loss = (1 - c.a) * ce + c.a * kd
        return loss, {"ce": ce.detach(), "kd": kd.detach()}
