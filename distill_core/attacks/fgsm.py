"""Fast gradient sign method (Goodfellow et al. 2015): one signed-gradient step of size eps."""

from __future__ import annotations

import torch
from torch import nn

from ._common import LossFn, Trace, attack_loss, emit, input_gradient, per_sample_norm, runs_in_eval_mode


@runs_in_eval_mode
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, target: torch.Tensor | None = None,
         loss: str | LossFn = "ce", trace: Trace = None) -> torch.Tensor:
    r"""FGSM in the paper 'Explaining and harnessing adversarial examples'
    [https://arxiv.org/abs/1412.6572]

    Distance Measure : Linf

    ``x' = clip(x + eps * sign(grad_x loss), 0, 1)``; targeted, it descends the loss to the target.

    Arguments:
        model (nn.Module): maps pixels in [0, 1] to logits; run in eval mode (each module's mode restored
            after), parameter gradients left alone.
        eps (float): step size = Linf budget. ``eps = 0`` returns ``x``.
        target (LongTensor | None): target classes (N,) for a targeted attack. (Default: None)
        loss (str | callable): ``"ce"``, ``"cw"``, ``"softmax"`` or ``loss(logits, labels) -> (N,)``,
            as in :func:`~distill_core.attacks.pgd`. (Default: "ce")
        trace (callable | list | None): gets step 0 (at ``x``) and step 1 (at ``x'``); ``info`` has
            per-sample CPU tensors ``loss``, ``margin``, ``pred`` and ``dist`` (Linf). (Default: None)

    Shape:
        - x: :math:`(N, C, H, W)` or :math:`(N, D)`, values in [0, 1].
        - y: :math:`(N)` true class indices.
        - output: same shape as ``x``.

    Examples::
        >>> x_adv = fgsm(model, x, y, eps=8/255)
        >>> x_adv = fgsm(model, x, y, eps=0.3, target=torch.full_like(y, 3))
    """
    x = x.detach()
    y = y.to(x.device)
    target = None if target is None else target.to(x.device)
    x_req = x.clone().requires_grad_(True)
    logits = model(x_req)
    loss_per_sample = attack_loss(loss, logits, y, target)
    grad = input_gradient(loss_per_sample.sum(), x_req)
    x_adv = torch.clamp(x + eps * grad.sign(), min=0, max=1)
    if trace is not None:
        emit(trace, 0, logits, y, target, loss_per_sample, dist=torch.zeros(len(x)))
        with torch.no_grad():
            logits = model(x_adv)
            emit(trace, 1, logits, y, target, attack_loss(loss, logits, y, target),
                 dist=per_sample_norm(x_adv - x, "linf"))
    return x_adv
